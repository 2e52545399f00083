// Command shop is every service of the shop example stack in one binary; the
// first argument picks the role:
//
//	shop serve gateway|orders|inventory|payments|fraud
//	shop probe [PATH|URL]
//
// serve listens on $LISTEN_HOST:$PORT: LISTEN_HOST defaults to 127.0.0.1
// (the image sets 0.0.0.0) and PORT to the service's port, 18080 for
// gateway and 18082..18085 for orders, inventory, payments, fraud.
// LISTEN_ADDR (e.g. ":8080") overrides the whole address.
// Upstreams come from ORDERS_URL, INVENTORY_URL, PAYMENTS_URL and FRAUD_URL
// (default http://localhost:<default port>). SIGINT or SIGTERM shuts the
// server down gracefully.
//
// probe is a healthcheck client for FROM scratch images and native processes
// alike: it GETs http://127.0.0.1:$PORT/healthz (or LISTEN_HOST's or
// LISTEN_ADDR's address, or the given path or full http:// URL) with a 2s timeout and exits 0 on 2xx,
// 1 otherwise.
package main
