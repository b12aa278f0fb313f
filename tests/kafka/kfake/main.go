// Command kfake runs franz-go's kfake, an in-process Kafka-compatible cluster,
// as a single broker on 127.0.0.1: a broker much lighter than a JVM, so that a
// benchmark on a small machine measures the clients rather than the broker.
//
// It prints the address it listens on as the first line of stdout and serves
// until SIGTERM or SIGINT. Data is kept in memory only.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func main() {
	port := flag.Int("port", 0, "port to listen on, on 127.0.0.1 (0: one the OS chooses)")
	partitions := flag.Int("partitions", 3, "partitions of an auto-created topic")
	refuseIdempotence := flag.Bool("refuse-idempotence", false,
		"answer every InitProducerId with UNKNOWN_SERVER_ERROR, as some Kafka-compatible brokers do")
	logLevel := flag.String("log-level", "none", "none, error, warn, info or debug (to stderr)")
	flag.Parse()

	levels := map[string]kfake.LogLevel{"none": kfake.LogLevelNone, "error": kfake.LogLevelError,
		"warn": kfake.LogLevelWarn, "info": kfake.LogLevelInfo, "debug": kfake.LogLevelDebug}
	level, ok := levels[*logLevel]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown -log-level %q\n", *logLevel)
		os.Exit(2)
	}
	cluster, err := kfake.NewCluster(
		kfake.Ports(*port),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(*partitions),
		kfake.WithLogger(kfake.BasicLogger(os.Stderr, level)),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kfake: %v\n", err)
		os.Exit(1)
	}
	if *refuseIdempotence {
		cluster.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
			cluster.KeepControl()
			resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
			resp.ErrorCode = kerr.UnknownServerError.Code
			return resp, nil, true
		})
	}
	fmt.Println(cluster.ListenAddrs()[0])

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
	cluster.Close()
}
