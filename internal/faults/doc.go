// Package faults stages the network's faults between the worker and its
// dependencies, for the failover drill, the benchmark's cloud profile and
// the integration tests alike:
//
//   - Toxiproxy drives a toxiproxy server (Shopify's TCP fault proxy, which
//     scripts/stack.sh installs and starts): one Path per dependency, with
//     latency and jitter, a black hole, resets, a slow close or a bandwidth
//     limit applied and lifted while traffic flows.
//   - AWSProxy is an HTTP reverse proxy in front of the SQS/SNS endpoint for
//     the faults that live in HTTP: resets, 500s, 503s, throttling, held
//     calls, and DeleteMessageBatch answers with some entries failed.
//   - SMTPServer is a scriptable SMTP server: a connection that dies after
//     DATA and before the verdict, slow replies, refusals.
//   - CommitCutter is a PostgreSQL-protocol proxy that cuts connections
//     between a COMMIT reaching the server and its reply reaching the
//     client: commits whose outcome the client cannot know.
//
// It is tooling: nothing that ships links it (cmd/internal/shipped checks).
package faults
