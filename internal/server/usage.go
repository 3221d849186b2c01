package server

import (
	"net/http"
	"strings"
)

// usageText is the page at GET / for curl and other clients that do not
// ask for HTML (status.go), and a section of the HTML status page.
// {origin} is the proxy's own origin.
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
Status: {origin}/?format=html (a browser gets it at /)   as JSON: {origin}/?format=json
`

// usageBody is usageText for the origin r was sent to.
func (s *Server) usageBody(r *http.Request) string {
	return strings.NewReplacer("{version}", s.version, "{origin}", requestOrigin(r)).Replace(usageText)
}

// usage answers with the usage text; serveStatus calls it.
func (s *Server) usage(w http.ResponseWriter, r *http.Request) {
	body := s.usageBody(r)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", itoa(int64(len(body))))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write([]byte(body))
	}
}
