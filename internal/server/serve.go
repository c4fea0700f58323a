package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// stopping says how serve stops once its context ends: draining is
// called at once (readiness fails from then on), requests are still
// accepted for delay, so that load balancers that have not yet seen the
// failed readiness send none to a closed port, and then in-flight ones
// are drained for up to drain.
type stopping struct {
	draining     func()
	delay, drain time.Duration
}

// serve runs srv on listen until ctx ends, then stops as stop says.
// Requests keep running when ctx ends (their contexts do not inherit its
// cancellation), so a half-done change is finished, not cut off.
// listening is told the bound address once it accepts.
func serve(ctx context.Context, log *slog.Logger, listen string, srv *http.Server, stop stopping, listening func(addr string)) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	listening(ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if stop.draining != nil {
		stop.draining()
	}
	if stop.delay > 0 {
		log.Info("shutting down; not ready, still serving", "delay", stop.delay.String())
		time.Sleep(stop.delay)
	}
	log.Info("shutting down; draining in-flight requests", "timeout", stop.drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), stop.drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
