package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrDataDirLocked is returned when another process owns the data directory.
var ErrDataDirLocked = errors.New("data directory is locked by another process")

// ErrDataDirUnusable is returned when the data directory cannot be created or written.
var ErrDataDirUnusable = errors.New("data directory is not usable")

// EmbeddedOptions configure the in-process NATS server.
type EmbeddedOptions struct {
	DataDir      string        // JetStream files live in DataDir/jetstream
	Host         string        // client listen host; default 127.0.0.1
	Port         int           // client port; 0 = 4222, -1 = random, -2 = no listener (in-process only)
	SyncInterval time.Duration // default 1s
	SyncAlways   bool
	MaxStore     int64 // bytes; 0 = nats-server's default (a share of the disk)
	Logger       *slog.Logger
}

// Embedded is a running in-process nats-server with JetStream.
type Embedded struct {
	Server *server.Server
	lock   *os.File
}

// StartEmbedded starts nats-server in this process. It returns once the server accepts
// connections and JetStream is enabled, or with an error (never a hang).
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	if o.DataDir == "" {
		return nil, fmt.Errorf("starting embedded NATS: %w: empty path", ErrDataDirUnusable)
	}
	lock, err := lockDataDir(o.DataDir)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:            "allot-embedded",
		Host:                  o.Host,
		Port:                  o.Port,
		JetStream:             true,
		StoreDir:              o.DataDir, // nats-server adds "jetstream" itself
		JetStreamMaxStore:     o.MaxStore,
		SyncInterval:          o.SyncInterval,
		SyncAlways:            o.SyncAlways,
		NoSigs:                true, // allot handles signals and shuts the server down in order
		MaxPayload:            8 << 20,
		DisableShortFirstPing: true,
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	switch o.Port {
	case 0:
		opts.Port = 4222
	case -2:
		opts.DontListen = true
		opts.Port = 0
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = time.Second
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("starting embedded NATS: %w", err)
	}
	if o.Logger != nil {
		ns.SetLoggerV2(slogAdapter{o.Logger.With("component", "nats")}, false, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		lock.Close()
		return nil, fmt.Errorf("starting embedded NATS: not ready after 15s (is port %d free?)", opts.Port)
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		lock.Close()
		return nil, fmt.Errorf("starting embedded NATS: JetStream did not start in %s: %w", opts.StoreDir, ErrDataDirUnusable)
	}
	return &Embedded{Server: ns, lock: lock}, nil
}

// ClientURL is the URL other processes connect to ("" without a listener).
func (e *Embedded) ClientURL() string {
	if e.Server.Addr() == nil {
		return ""
	}
	return e.Server.ClientURL()
}

// Shutdown stops the server, waits for it to finish, and releases the directory lock.
func (e *Embedded) Shutdown() {
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
	if e.lock != nil {
		e.lock.Close()
		e.lock = nil
	}
}

// lockDataDir creates dir if needed, proves it writable, and takes an exclusive flock on
// dir/LOCK. The lock dies with the process, so a SIGKILL never leaves a stale lock behind.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDataDirUnusable, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDataDirUnusable, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", dir, ErrDataDirLocked)
		}
		return nil, fmt.Errorf("locking %s: %w: %v", dir, ErrDataDirUnusable, err)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	probe := filepath.Join(dir, ".write-probe")
	if err := os.WriteFile(probe, []byte("ok"), 0o640); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %v", ErrDataDirUnusable, err)
	}
	os.Remove(probe)
	return f, nil
}

// slogAdapter sends nats-server's log lines to slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  {}
