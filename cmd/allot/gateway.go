package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/allot-dev/allot/gateway"
)

func cmdGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "gateway.yaml", "gateway config: upstream, allot url and key, routes with identify and policies")
	listen := fs.String("listen", "", "listen address (overrides the file; default 127.0.0.1:8081)")
	upstream := fs.String("upstream", "", "upstream URL (overrides the file)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	// ALLOT_GATEWAY_<NAME>: a gateway often runs beside allot serve, whose ALLOT_CONFIG names
	// serve's file (read as the gateway's, it was refused).
	if err := bindEnvPrefix(fs, args, "ALLOT_GATEWAY_"); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		// The flag parser stops at the first plain word: "replay verify --data D" read no --data.
		return exitWith(2, fmt.Errorf("%s takes no arguments, got %q", fs.Name(), fs.Args()))
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return exitWith(2, err)
	}
	cfg, err := gateway.LoadConfig(*cfgPath)
	if err != nil {
		return exitWith(2, err)
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8081"
	}
	if *upstream != "" {
		cfg.Upstream = *upstream
	}
	h, err := gateway.Proxy(cfg, func(err error) { log.Warn("quota service", "err", err) })
	if err != nil {
		return exitWith(2, fmt.Errorf("%s: %w", *cfgPath, err))
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return exitWith(1, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Info("allot gateway serving", "listen", "http://"+ln.Addr().String(), "upstream", cfg.Upstream, "allot", cfg.Allot.URL, "routes", len(cfg.Routes))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
