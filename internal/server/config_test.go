package server

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parseConfig(t *testing.T, env map[string]string, args ...string) (*Config, error) {
	t.Helper()
	var c Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs, func(k string) string { return env[k] })
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := c.LoadAPIKeysFile(); err != nil {
		return &c, err
	}
	return &c, c.Validate()
}

func TestConfigDefaults(t *testing.T) {
	c, err := parseConfig(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":8080" || c.HubURL != "https://huggingface.co" || c.ServerTokenEnabled || c.DrainTimeout != 10*time.Minute ||
		c.LogFormat != "text" || c.LogLevel != "info" || c.MaxDownloads != 64 || c.MaxBuffer != 1<<30 ||
		c.MetricsListen != "" || c.CacheSize != 0 || c.ReadAhead != DefaultReadAhead ||
		c.CacheDir != "" || c.Revalidate != 5*time.Minute || c.Offline || c.UpstreamGrace != 30*time.Second {
		t.Errorf("defaults: %+v", c)
	}
}

// TestConfigCacheDirDefault: the disk cache is on without flags, in the
// user's cache directory; --cache-dir "" turns it off.
func TestConfigCacheDirDefault(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"XDG_CACHE_HOME": "/x/cache", "HOME": "/home/u"}, nil, "/x/cache/xetproxy"},
		{map[string]string{"HOME": "/home/u"}, nil, "/home/u/.cache/xetproxy"},
		{map[string]string{"HOME": "/home/u", "XETPROXY_CACHE_DIR": "/srv/c"}, nil, "/srv/c"},
		{map[string]string{"HOME": "/home/u", "XETPROXY_CACHE_DIR": ""}, nil, "/home/u/.cache/xetproxy"},
		{map[string]string{"HOME": "/home/u"}, []string{"--cache-dir", ""}, ""},
		{map[string]string{"HOME": "/home/u"}, []string{"--cache-dir", "/d"}, "/d"},
		{map[string]string{"XETPROXY_OFFLINE": "true", "XETPROXY_REVALIDATE": "1m", "XETPROXY_UPSTREAM_GRACE": "2s"}, nil, ""},
	} {
		c, err := parseConfig(t, tc.env, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		if c.CacheDir != tc.want {
			t.Errorf("env %v args %v: cache dir %q, want %q", tc.env, tc.args, c.CacheDir, tc.want)
		}
		if tc.env["XETPROXY_OFFLINE"] != "" && (!c.Offline || c.Revalidate != time.Minute || c.UpstreamGrace != 2*time.Second) {
			t.Errorf("offline settings from the environment: %v %v %v", c.Offline, c.Revalidate, c.UpstreamGrace)
		}
	}
}

func TestConfigEnvAndFlags(t *testing.T) {
	env := map[string]string{
		"PORT": "9000", "HF_ENDPOINT": "http://127.0.0.1:5555", "XETPROXY_SERVER_TOKEN_ENABLED": "true",
		"HF_TOKEN": "hf_server", "XETPROXY_API_KEYS": " key-aaaaaaaaaaaaaaaa , key-bbbbbbbbbbbbbbbb ",
		"XETPROXY_DRAIN_TIMEOUT": "30s", "XETPROXY_LOG_FORMAT": "json", "XETPROXY_LOG_LEVEL": "debug",
		"XETPROXY_MAX_DOWNLOADS": "3", "XETPROXY_MAX_BUFFER": "256MiB", "XETPROXY_METRICS_LISTEN": "127.0.0.1:9100",
	}
	c, err := parseConfig(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":9000" || c.HubURL != "http://127.0.0.1:5555" || !c.ServerTokenEnabled || c.ServerToken != "hf_server" ||
		len(c.APIKeys) != 2 || c.APIKeys[1] != "key-bbbbbbbbbbbbbbbb" || c.DrainTimeout != 30*time.Second || c.LogFormat != "json" ||
		c.MaxDownloads != 3 || c.MaxBuffer != 256<<20 || c.MetricsListen != "127.0.0.1:9100" {
		t.Errorf("env: %+v", c)
	}
	env["XETPROXY_LISTEN"] = "127.0.0.1:7000"
	c, err = parseConfig(t, env, "--max-downloads=5", "--max-buffer=2GiB", "--listen=:1234")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":1234" || c.MaxDownloads != 5 || c.MaxBuffer != 2<<30 {
		t.Errorf("flags over env: %+v", c)
	}
	delete(env, "XETPROXY_LISTEN")
}

func TestConfigAPIKeysFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(p, []byte("# ops keys\nkey-1111111111111111\n\n  key-2222222222222222  # ci\n"), 0o600)
	c, err := parseConfig(t, map[string]string{"XETPROXY_API_KEYS": "key-0000000000000000"}, "--api-keys-file", p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.APIKeys, ",") != "key-0000000000000000,key-1111111111111111,key-2222222222222222" {
		t.Errorf("keys = %q", c.APIKeys)
	}
	if _, err := parseConfig(t, nil, "--api-keys-file", p+".missing"); err == nil {
		t.Error("missing keys file accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"XETPROXY_MAX_DOWNLOADS": "many"}, nil, "XETPROXY_MAX_DOWNLOADS"},
		{map[string]string{"XETPROXY_MAX_BUFFER": "1 parsec"}, nil, "XETPROXY_MAX_BUFFER"},
		{map[string]string{"XETPROXY_DRAIN_TIMEOUT": "soon"}, nil, "XETPROXY_DRAIN_TIMEOUT"},
		{map[string]string{"XETPROXY_SERVER_TOKEN_ENABLED": "yes please"}, nil, "XETPROXY_SERVER_TOKEN_ENABLED"},
		{nil, []string{"--server-token-enabled"}, "HF_TOKEN"},
		{map[string]string{"HF_TOKEN": "hf_x"}, []string{"--server-token-enabled"}, "API key"},
		{map[string]string{"XETPROXY_API_KEYS": "short"}, nil, "16 characters"},
		{nil, []string{"--hub-url", "ftp://x"}, "hub-url"},
		{nil, []string{"--hub-url", "http://u:p@x"}, "hub-url"},
		{nil, []string{"--listen", "nonsense"}, "listen"},
		{nil, []string{"--log-format", "xml"}, "log-format"},
		{nil, []string{"--log-level", "loud"}, "log level"},
		{nil, []string{"--max-downloads", "0"}, "max-downloads"},
		{nil, []string{"--max-buffer", "1MiB"}, "max-buffer"},
		{nil, []string{"--drain-timeout", "0s"}, "drain-timeout"},
		{nil, []string{"--s3-prefix", "x"}, "s3-bucket"},
	}
	for _, tc := range tests {
		_, err := parseConfig(t, tc.env, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("env %v args %v: err = %v, want mention of %q", tc.env, tc.args, err, tc.want)
		}
	}
	c, _ := parseConfig(t, map[string]string{"HF_TOKEN": "hf_secret_value"})
	for _, v := range c.Redacted() {
		if s, ok := v.(string); ok && strings.Contains(s, "hf_secret_value") {
			t.Error("Redacted shows the server token")
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "1KiB": 1024, "1k": 1024, "2MB": 2e6, "1GiB": 1 << 30, "3 GB": 3e9, "1TiB": 1 << 40} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1", "1.5GiB", "1XB", "99999999999TiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

// TestConfigCacheSendfile: disk hits are sent from their files unless
// --cache-sendfile=false or XETPROXY_CACHE_SENDFILE=false, and the choice
// reaches the engine's configuration.
func TestConfigCacheSendfile(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		off  bool
	}{
		{nil, nil, false},
		{nil, []string{"--cache-sendfile=false"}, true},
		{map[string]string{"XETPROXY_CACHE_SENDFILE": "false"}, nil, true},
		{map[string]string{"XETPROXY_CACHE_SENDFILE": "false"}, []string{"--cache-sendfile"}, false},
		{nil, []string{"--cache-sendfile=true"}, false},
	} {
		c, err := parseConfig(t, tc.env, tc.args...)
		if err != nil {
			t.Fatalf("env %v args %v: %v", tc.env, tc.args, err)
		}
		if c.NoCacheSendfile != tc.off || c.Engine(nil, nil).NoSendfile != tc.off {
			t.Errorf("env %v args %v: sendfile off = %v (engine %v), want %v", tc.env, tc.args, c.NoCacheSendfile, c.Engine(nil, nil).NoSendfile, tc.off)
		}
	}
	if _, err := parseConfig(t, nil, "--cache-sendfile=maybe"); err == nil {
		t.Error("--cache-sendfile=maybe accepted")
	}
}
