// Command load POSTs one body to one URL over HTTP/1.1 keep-alive connections, as fast as the
// server answers, for a bounded time and count, and prints one JSON line of results.
// The benchmark's own small load generator (hey's shape, with machine-readable output).
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	FirstErr string  `json:"first_error,omitempty"`
}

func main() {
	url := flag.String("url", "", "https://127.0.0.1:PORT/mutate")
	bodyPath := flag.String("body", "", "request body file")
	caPath := flag.String("cacert", "", "CA that signed the server's certificate")
	conns := flag.Int("c", 64, "connections (one goroutine each)")
	maxRequests := flag.Int("n", 200000, "stop after this many requests in all")
	duration := flag.Duration("z", 10*time.Second, "stop after this long")
	flag.Parse()
	body, err := os.ReadFile(*bodyPath)
	if err != nil {
		log.Fatal(err)
	}
	pem, err := os.ReadFile(*caPath)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		log.Fatalf("no certificate in %s", *caPath)
	}
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		MaxIdleConnsPerHost: *conns,
		MaxConnsPerHost:     *conns,
		ForceAttemptHTTP2:   false,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}

	var issued atomic.Int64
	var mu sync.Mutex
	var latencies []time.Duration
	errors := 0
	firstErr := ""
	deadline := time.Now().Add(*duration)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			badMsg := ""
			for issued.Add(1) <= int64(*maxRequests) && time.Now().Before(deadline) {
				t0 := time.Now()
				resp, err := client.Post(*url, "application/json", bytes.NewReader(body))
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				if err != nil {
					bad++
					if badMsg == "" {
						badMsg = err.Error()
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			errors += bad
			if firstErr == "" {
				firstErr = badMsg
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	r := result{Requests: len(latencies), Errors: errors, Seconds: elapsed, FirstErr: firstErr}
	if elapsed > 0 {
		r.RPS = float64(len(latencies)) / elapsed
	}
	if n := len(latencies); n > 0 {
		r.P50ms = ms(latencies[n*50/100])
		r.P99ms = ms(latencies[min(n-1, n*99/100)])
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
