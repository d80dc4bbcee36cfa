// Package shipped has no code: its tests hold what the production image
// ships — the Dockerfile builds cmd/worker and cmd/orderctl — to the product
// alone. The benchmark, the load generator, the drill and the modules they
// link (gonum/plot and its font, PDF and SVG modules, the progress bar) live
// in cmd/orderbench, which the image does not contain.
package shipped
