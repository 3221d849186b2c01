package server

import (
	"net/http"
	"strings"
)

// usageText is the page at GET /. {origin} is the proxy's own origin.
const usageText = `xetproxy {version} - Hugging Face downloads over plain HTTP, every byte through this server

Download a file (models; add datasets/ or spaces/ after /download/ for other repo types):
  curl -fLO {origin}/download/{namespace}/{repo}/{path}?revision=main
  curl -fL -r 0-1023 {origin}/download/datasets/{namespace}/{repo}/{path}

Download a file by its Xet hash (access is checked against the repo you name):
  curl -fL -o out.bin '{origin}/download-hash/{xet-hash}?repo={namespace}/{repo}&repo_type=model&filename=out.bin'

Use it as a drop-in Hub endpoint (huggingface_hub, transformers, hf CLI, @huggingface/hub hubUrl):
  HF_ENDPOINT={origin} hf download {namespace}/{repo}
  {origin}/{namespace}/{repo}/resolve/{revision}/{path}   and   {origin}/api/...

Private and gated repos: send your Hub token as "Authorization: Bearer hf_...".
It is used for your request only and never stored or logged.

Ranges (Range: bytes=a-b, a-, -n), If-None-Match and If-Range work on every download route.
Health: {origin}/health   Readiness: {origin}/readyz   Metrics: /metrics
`

func (s *Server) usage(w http.ResponseWriter, r *http.Request) {
	setRoute(r, "usage")
	if !s.getOrHead(w, r) {
		return
	}
	body := strings.NewReplacer("{version}", s.version, "{origin}", requestOrigin(r)).Replace(usageText)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", itoa(int64(len(body))))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write([]byte(body))
	}
}
