package server

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestGuardKeepsTheLoopThroughAPanic: a background pass that panics is
// logged with its stack and counted, and the caller (the loop) goes on;
// unrecovered, the panic ended the process, API and all, on every pass
// that met its cause.
func TestGuardKeepsTheLoopThroughAPanic(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	panics := prometheus.NewCounter(prometheus.CounterOpts{Name: "panics"})
	ran := 0
	for range 2 {
		guard(t.Context(), log, panics, "drift check", func(context.Context) {
			ran++
			var m map[string]int
			m["boom"]++ // a nil map: a runtime panic, as a bug would cause
		})
	}
	guard(t.Context(), log, panics, "recovery", func(context.Context) { ran++ })
	if ran != 3 {
		t.Errorf("passes run: %d, want 3", ran)
	}
	if got := testutil.ToFloat64(panics); got != 2 {
		t.Errorf("panics counted: %v, want 2", got)
	}
	out := logs.String()
	if strings.Count(out, `"pass":"drift check"`) != 2 || !strings.Contains(out, "assignment to entry in nil map") ||
		!strings.Contains(out, "server_test.go") || strings.Contains(out, `"pass":"recovery"`) {
		t.Errorf("log: %s; want each panic with its pass, cause and stack, and nothing of the pass that did not panic", out)
	}
}
