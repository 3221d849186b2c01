package server

import (
	"log/slog"
	"net/http"

	"github.com/xetproxy/xetproxy/internal/buildinfo"
	"github.com/xetproxy/xetproxy/internal/casclient"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/proxy"
)

// NewEngine builds the download engine for a server of cfg: a Hub client
// for cfg.HubURL and a CAS client, both sending through transport (give it
// Metrics.Transport so upstream requests are counted), with cfg.ReadAhead
// as the per-stream buffer and cfg.MaxBuffer as the engine-wide one. The
// CAS fetch client strips Authorization on every redirect; presigned
// transfer requests never carry one in the first place.
func NewEngine(cfg Config, transport http.RoundTripper, log *slog.Logger) (*proxy.Engine, error) {
	ua := "xetproxy/" + buildinfo.Version()
	hc := hub.NewClient(cfg.HubURL)
	hc.HTTP = &http.Client{Transport: transport}
	hc.UserAgent = ua
	cas, err := casclient.New(casclient.Config{
		API:       &http.Client{Transport: transport},
		Fetch:     &http.Client{Transport: transport, CheckRedirect: stripAuthRedirect},
		UserAgent: ua,
	})
	if err != nil {
		return nil, err
	}
	return proxy.New(proxy.Config{
		Hub:          hc,
		CAS:          cas,
		StreamBuffer: cfg.ReadAhead,
		MaxBuffer:    cfg.MaxBuffer,
		Logger:       log,
	})
}

func stripAuthRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return http.ErrUseLastResponse
	}
	req.Header.Del("Authorization")
	return nil
}
