package warm

import "testing"

func TestSelected(t *testing.T) {
	for _, c := range []struct {
		include, exclude []string
		path             string
		want             bool
	}{
		{nil, nil, "a/b/c.bin", true},
		{[]string{"*.json"}, nil, "config.json", true},
		{[]string{"*.json"}, nil, "sub/dir/tokenizer.json", true}, // no '/': the base name
		{[]string{"sub/*.json"}, nil, "sub/x.json", true},
		{[]string{"sub/*.json"}, nil, "sub/dir/x.json", false}, // '*' does not cross '/'
		{[]string{"sub/*"}, nil, "sub/dir/x.json", false},
		{[]string{"*"}, nil, "sub/dir/x.json", true}, // base name
		{[]string{"*.safetensors"}, []string{"sub/*"}, "sub/a.safetensors", false},
		{[]string{"*.safetensors"}, []string{"sub/*"}, "a.safetensors", true},
		{nil, []string{"*.md"}, "docs/README.md", false},
		{[]string{"model-0000?.bin"}, nil, "model-00001.bin", true},
		{[]string{"model-0000?.bin"}, nil, "model-00010.bin", false},
	} {
		if got := selected(c.include, c.exclude, c.path); got != c.want {
			t.Errorf("include %q exclude %q %s: %v, want %v", c.include, c.exclude, c.path, got, c.want)
		}
	}
}

func TestCheckPatterns(t *testing.T) {
	if err := checkPatterns([]string{"*.bin", "a/[bc]/*"}); err != nil {
		t.Errorf("good patterns: %v", err)
	}
	for _, p := range []string{"[x", "", "a\\"} {
		if err := checkPatterns([]string{p}); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}
