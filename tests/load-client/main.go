// The load client of the fault tests: calls a webhook the way kube-apiserver does, with Go's own
// net/http transport (the one kube-apiserver's webhook client is built on), so that GOAWAY,
// `Connection: close`, reconnects and retries follow Go's rules rather than a model of them.
//
// Like kube-apiserver, it dials the webhook Service by its DNS name (TLS verified against the
// CA bundle for that name) and keeps connections open: one HTTP/2 transport, whose requests
// share one multiplexed connection, and one HTTP/1.1 transport with a pool of kept-alive
// connections. The Service is modelled by the dialer: each new TCP connection goes to one of the
// current endpoints, as kube-proxy picks one for a new flow, and stays with it (conntrack).
//
// Usage: load-client -ca CA.pem -name SERVICE -rate N -bodies DIR
// Bodies: DIR/0.json … DIR/k-1.json, review i uses body i mod k with the uid placeholder
// "@UID@" replaced by "load-<i>". Reviews alternate between HTTP/2 (even i) and HTTP/1.1.
//
// Commands on stdin, one per line:
//
//	endpoints ADDR[,ADDR…]   the Service's endpoints from now on (needed before "start")
//	start [UNIX_MICROS]      begin sending at the rate; times in the outcomes are measured from
//	                         the wall-clock instant given (the test's own clock), else from now
//	reconnect                new connections from now on (an API server restart); the old ones
//	                         finish what they carry
//	stop                     stop sending, wait for every review to end, print the outcomes
//
// Output on stdout: one JSON object per review (Outcome; times in milliseconds since the start), in
// order of index, then the process exits.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Outcome of one review, as the fault tests read it.
type Outcome struct {
	Index    int    `json:"index"`
	Proto    string `json:"proto"`
	SentMs   int64  `json:"sent_ms"`
	DoneMs   int64  `json:"done_ms"`
	Endpoint string `json:"endpoint,omitempty"`
	// Cert is the common name of the serving certificate of the connection that answered.
	Cert    string `json:"cert,omitempty"`
	Status  int    `json:"status,omitempty"`
	Uid     string `json:"uid,omitempty"`
	Allowed *bool  `json:"allowed,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
	// Retries counts the connections this review's request was given after the first (Go's
	// transport retries an HTTP/2 request that a GOAWAY refused on a new connection).
	Retries int `json:"retries"`
}

type service struct {
	mu        sync.Mutex
	endpoints []string
	dialer    net.Dialer
}

func (s *service) set(endpoints []string) {
	s.mu.Lock()
	s.endpoints = endpoints
	s.mu.Unlock()
}

func (s *service) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	s.mu.Lock()
	if len(s.endpoints) == 0 {
		s.mu.Unlock()
		return nil, fmt.Errorf("service has no endpoints")
	}
	target := s.endpoints[rand.Intn(len(s.endpoints))]
	s.mu.Unlock()
	return s.dialer.DialContext(ctx, network, target)
}

func main() {
	caPath := flag.String("ca", "", "CA bundle (PEM)")
	name := flag.String("name", "", "the Service's DNS name, as in the webhook's clientConfig")
	rate := flag.Int("rate", 1000, "reviews per second")
	bodiesDir := flag.String("bodies", "", "directory of review bodies 0.json … k-1.json")
	timeout := flag.Duration("timeout", 10*time.Second, "per-review timeout (the webhook's timeoutSeconds)")
	flag.Parse()

	caPEM, err := os.ReadFile(*caPath)
	check(err)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		check(fmt.Errorf("no certificate in %s", *caPath))
	}
	var bodies [][]byte
	for i := 0; ; i++ {
		b, err := os.ReadFile(filepath.Join(*bodiesDir, fmt.Sprintf("%d.json", i)))
		if os.IsNotExist(err) {
			break
		}
		check(err)
		bodies = append(bodies, b)
	}
	if len(bodies) == 0 {
		check(fmt.Errorf("no bodies in %s", *bodiesDir))
	}

	svc := &service{}
	tlsConfig := func(protos ...string) *tls.Config {
		return &tls.Config{RootCAs: roots, ServerName: *name, NextProtos: protos, MinVersion: tls.VersionTLS12}
	}
	// The two transports of one API server instance; "reconnect" replaces them, as when the
	// API server restarts or a request goes to another instance.
	transports := func() (h2, h1 *http.Transport) {
		h2 = &http.Transport{
			DialContext:         svc.dial,
			TLSClientConfig:     tlsConfig("h2", "http/1.1"),
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 100,
			IdleConnTimeout:     90 * time.Second,
		}
		h1 = &http.Transport{
			DialContext:         svc.dial,
			TLSClientConfig:     tlsConfig("http/1.1"),
			TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
			MaxIdleConnsPerHost: 100,
			IdleConnTimeout:     90 * time.Second,
		}
		return h2, h1
	}
	var transportMu sync.Mutex
	h2, h1 := transports()
	url := "https://" + *name + ":443/validate?timeout=10s"

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		outcomes []Outcome
		stopOnce sync.Once
		stop     = make(chan struct{})
		start    = time.Now()
	)
	send := func(i int) {
		defer wg.Done()
		o := Outcome{Index: i, Proto: "h2", SentMs: time.Since(start).Milliseconds()}
		transportMu.Lock()
		transport := h2
		if i%2 == 1 {
			o.Proto, transport = "h1", h1
		}
		transportMu.Unlock()
		body := bytes.ReplaceAll(bodies[i%len(bodies)], []byte("@UID@"), []byte(fmt.Sprintf("load-%d", i)))
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		conns := 0
		var endpoint, cert string
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			conns++
			endpoint = info.Conn.RemoteAddr().String()
			if tc, ok := info.Conn.(*tls.Conn); ok {
				if peers := tc.ConnectionState().PeerCertificates; len(peers) > 0 {
					cert = peers[0].Subject.CommonName
				}
			}
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "POST", url, bytes.NewReader(body))
		check(err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, */*")
		resp, err := transport.RoundTrip(req)
		if conns > 1 {
			o.Retries = conns - 1
		}
		o.Endpoint, o.Cert = endpoint, cert
		if err != nil {
			o.Error = err.Error()
		} else {
			o.Status = resp.StatusCode
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				o.Error = "reading the answer: " + err.Error()
			} else {
				var review struct {
					Response struct {
						Uid     string `json:"uid"`
						Allowed *bool  `json:"allowed"`
						Status  struct {
							Message string `json:"message"`
						} `json:"status"`
					} `json:"response"`
				}
				if err := json.Unmarshal(data, &review); err != nil && resp.StatusCode == 200 {
					o.Error = "not an AdmissionReview: " + err.Error()
				}
				o.Uid, o.Allowed = review.Response.Uid, review.Response.Allowed
				o.Message = review.Response.Status.Message
			}
		}
		o.DoneMs = time.Since(start).Milliseconds()
		mu.Lock()
		outcomes = append(outcomes, o)
		mu.Unlock()
	}
	generate := func() {
		// Open loop: reviews leave on schedule whether or not earlier ones were answered, as
		// Pod creations arrive at the API server.
		interval := time.Second / time.Duration(*rate)
		next := time.Now()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			wg.Add(1)
			go send(i)
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
		}
	}

	var generated sync.WaitGroup
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "endpoints":
			if len(fields) != 2 {
				check(fmt.Errorf("endpoints takes one comma-separated list"))
			}
			svc.set(strings.Split(fields[1], ","))
		case "reconnect":
			transportMu.Lock()
			old2, old1 := h2, h1
			h2, h1 = transports()
			transportMu.Unlock()
			// Connections of the old transports close once their requests are answered.
			go func() {
				time.Sleep(*timeout)
				old2.CloseIdleConnections()
				old1.CloseIdleConnections()
			}()
		case "start":
			start = time.Now()
			if len(fields) == 2 {
				var micros int64
				_, err := fmt.Sscan(fields[1], &micros)
				check(err)
				// A wall-clock instant: time.Since then reads the same clock as the test does.
				start = time.UnixMicro(micros)
			}
			generated.Add(1)
			go func() { defer generated.Done(); generate() }()
		case "stop":
			stopOnce.Do(func() { close(stop) })
			generated.Wait()
			wg.Wait()
			sort.Slice(outcomes, func(a, b int) bool { return outcomes[a].Index < outcomes[b].Index })
			out := bufio.NewWriter(os.Stdout)
			enc := json.NewEncoder(out)
			for _, o := range outcomes {
				check(enc.Encode(o))
			}
			check(out.Flush())
			return
		default:
			check(fmt.Errorf("unknown command %q", fields[0]))
		}
	}
	check(fmt.Errorf("stdin closed before stop"))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "load-client:", err)
		os.Exit(2)
	}
}
