package server

import (
	"net/http/httptest"
	"testing"
)

func TestAuthPolicy(t *testing.T) {
	const key = "key-0123456789abcdef"
	on := newAuthPolicy(&Config{ServerTokenEnabled: true, ServerToken: "hf_server", APIKeys: []string{key}})
	off := newAuthPolicy(&Config{ServerTokenEnabled: false, ServerToken: "hf_server", APIKeys: []string{key}})
	nokeys := newAuthPolicy(&Config{})
	tests := []struct {
		name      string
		p         *authPolicy
		hdr       map[string]string
		token     string
		keyed     bool
		errStatus int
	}{
		{"anonymous", on, nil, "", false, 0},
		{"caller token", on, map[string]string{"Authorization": "Bearer hf_user"}, "hf_user", false, 0},
		{"caller token lower scheme", on, map[string]string{"Authorization": "bearer  hf_user "}, "hf_user", false, 0},
		{"basic ignored", on, map[string]string{"Authorization": "Basic dXNlcjpwdw=="}, "", false, 0},
		{"empty bearer", on, map[string]string{"Authorization": "Bearer "}, "", false, 0},
		{"key as bearer", on, map[string]string{"Authorization": "Bearer " + key}, "hf_server", true, 0},
		{"key header", on, map[string]string{"X-Proxy-Key": key}, "hf_server", true, 0},
		{"key header and caller token", on, map[string]string{"X-Proxy-Key": key, "Authorization": "Bearer hf_user"}, "hf_user", true, 0},
		{"wrong key header", on, map[string]string{"X-Proxy-Key": "key-nope-nope-nope-nope"}, "", false, 401},
		{"key but disabled", off, map[string]string{"X-Proxy-Key": key}, "", true, 0},
		{"key as bearer but disabled", off, map[string]string{"Authorization": "Bearer " + key}, "", true, 0},
		{"no keys configured: bearer is a hub token", nokeys, map[string]string{"Authorization": "Bearer " + key}, key, false, 0},
		{"no keys configured: any X-Proxy-Key is wrong", nokeys, map[string]string{"X-Proxy-Key": key}, "", false, 401},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("GET", "/x", nil)
		for k, v := range tc.hdr {
			r.Header.Set(k, v)
		}
		token, keyed, err := tc.p.upstreamToken(r)
		if tc.errStatus != 0 {
			if err == nil || err.Status != tc.errStatus {
				t.Errorf("%s: err = %v, want status %d", tc.name, err, tc.errStatus)
			}
			continue
		}
		if err != nil || token != tc.token || keyed != tc.keyed {
			t.Errorf("%s: = %q %v %v, want %q %v", tc.name, token, keyed, err, tc.token, tc.keyed)
		}
	}
}
