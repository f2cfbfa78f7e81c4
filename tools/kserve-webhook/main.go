// Command kserve-webhook serves KServe's own validating admission webhook for
// InferenceServices (serving.kserve.io/v1beta1): the validator of the pinned
// github.com/kserve/kserve module (v1beta1.InferenceServiceValidator), behind
// controller-runtime's admission handler exactly as KServe's manager registers it, at
// KServe's path. The dev cluster registers it with a ValidatingWebhookConfiguration, so
// every InferenceService the tests apply meets the rules a real KServe enforces.
//
// Only the validating webhook: KServe's defaulting webhook needs its ConfigMap and a
// client of the cluster, and the cluster has no KServe controller to act on the defaults.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/kserve/kserve/pkg/apis/serving/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// ValidatePath is where KServe's manager serves the InferenceService validator.
const ValidatePath = "/validate-serving-kserve-io-v1beta1-inferenceservice"

func main() {
	listen := flag.String("listen", "127.0.0.1:9443", "address to serve HTTPS on")
	certFile := flag.String("tls-cert-file", "", "PEM serving certificate (required)")
	keyFile := flag.String("tls-private-key-file", "", "PEM private key of the certificate (required)")
	verbose := flag.Bool("v", false, "log KServe's info messages too (every request), not only errors")
	flag.Parse()
	if *certFile == "" || *keyFile == "" {
		fmt.Fprintln(os.Stderr, "kserve-webhook: --tls-cert-file and --tls-private-key-file are required")
		os.Exit(2)
	}
	if err := run(*listen, *certFile, *keyFile, *verbose); err != nil {
		fmt.Fprintf(os.Stderr, "kserve-webhook: %v\n", err)
		os.Exit(1)
	}
}

func run(listen, certFile, keyFile string, verbose bool) error {
	sink := funcr.New(func(prefix, args string) {
		fmt.Fprintln(os.Stderr, time.Now().UTC().Format(time.RFC3339), prefix, args)
	}, funcr.Options{}).GetSink()
	if !verbose {
		sink = errorsOnly{sink}
	}
	logf.SetLogger(logr.New(sink))

	scheme := runtime.NewScheme()
	if err := v1beta1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("registering the v1beta1 types: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(ValidatePath, admission.WithCustomValidator(scheme, &v1beta1.InferenceService{}, &v1beta1.InferenceServiceValidator{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})

	// Load once now, so a bad certificate fails the start and not the first request.
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("loading the serving certificate: %w", err)
	}
	server := &http.Server{
		Addr:              listen,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- server.ListenAndServeTLS("", "") }()
	fmt.Fprintf(os.Stderr, "serving KServe's InferenceService validation on https://%s%s\n", listen, ValidatePath)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// errorsOnly drops info messages: KServe logs every request with its whole predictor at info.
type errorsOnly struct{ logr.LogSink }

func (errorsOnly) Enabled(int) bool { return false }

func (s errorsOnly) WithName(name string) logr.LogSink { return errorsOnly{s.LogSink.WithName(name)} }

func (s errorsOnly) WithValues(kv ...any) logr.LogSink {
	return errorsOnly{s.LogSink.WithValues(kv...)}
}
