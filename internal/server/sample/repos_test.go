package sample

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
)

func TestPopulate(t *testing.T) {
	h, err := fakehub.New(fakehub.Config{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	files, err := Populate(context.Background(), h, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("populated in %v", time.Since(start))
	for _, f := range files {
		rc, got, err := h.Open(f.Repo, "main", f.Path)
		if err != nil {
			t.Fatalf("%s/%s: %v", f.Repo, f.Path, err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		want, _ := io.ReadAll(f.Content())
		if !bytes.Equal(b, want) || got.Size != f.Size {
			t.Errorf("%s/%s: content differs (size %d, want %d)", f.Repo, f.Path, got.Size, f.Size)
		}
		if f.Path == "model.safetensors" && !got.Xet {
			t.Errorf("%s/%s is not stored with Xet", f.Repo, f.Path)
		}
	}
}
