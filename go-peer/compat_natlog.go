//go:build !golibp2p_pre045

package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/libp2p/go-libp2p/gologshim"
)

// go-libp2p v0.45 and later log through gologshim (slog), which takes an
// application's handler (SetDefaultHandler) if it is set before a logger's
// first use: hence init. The handler writes what go-libp2p's own fallback
// would (JSON on stderr, GOLOG_LOG_LEVEL per subsystem) and also hands the
// NAT manager's discovery error to the port-mapping watcher, whatever the
// level. Older releases: compat_natlog_pre045.go.

// natLogCaptured says whether the library's discovery error reaches the peer.
const natLogCaptured = true

func init() {
	gologshim.SetDefaultHandler(&libp2pLogHandler{})
}

// libp2pLogHandler is the handler of one subsystem (from the "logger"
// attribute gologshim adds first), or the root before it is known.
type libp2pLogHandler struct {
	system string
	out    slog.Handler
}

func (h *libp2pLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if h.out == nil {
		for _, a := range attrs {
			if a.Key == "logger" {
				return (&libp2pLogHandler{system: a.Value.String()}).withOut(attrs)
			}
		}
		return (&libp2pLogHandler{}).withOut(attrs)
	}
	return &libp2pLogHandler{system: h.system, out: h.out.WithAttrs(attrs)}
}

// withOut sets the stderr handler at the subsystem's configured level.
func (h *libp2pLogHandler) withOut(attrs []slog.Attr) *libp2pLogHandler {
	level := gologshim.ConfigFromEnv().LevelForSystem(h.system)
	h.out = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}).WithAttrs(attrs)
	return h
}

func (h *libp2pLogHandler) WithGroup(name string) slog.Handler {
	if h.out == nil {
		h = (&libp2pLogHandler{}).withOut(nil)
	}
	return &libp2pLogHandler{system: h.system, out: h.out.WithGroup(name)}
}

func (h *libp2pLogHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.system == natManagerLogger || (h.out != nil && h.out.Enabled(ctx, level))
}

func (h *libp2pLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.system == natManagerLogger && r.Message == discoverNATError {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				natLogSink.report(a.Value.String())
				return false
			}
			return true
		})
	}
	if h.out == nil || !h.out.Enabled(ctx, r.Level) {
		return nil
	}
	return h.out.Handle(ctx, r)
}
