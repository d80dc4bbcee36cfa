package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/redisstore"
)

// product changes a catalog entry (price in cents, stock, name) in the
// database and then in the product cache, so that workers price the next
// order with the new figures.
func product(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("product")
	price := fs.Int64("price", -1, "new price in integer cents")
	stock := fs.Int("stock", -1, "new stock level")
	name := fs.String("name", "", "new display name")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: orderctl product SKU [--price CENTS] [--stock N] [--name NAME]")
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] == "" || args[0][0] == '-' {
		fs.Usage()
		return errors.New("a SKU is required first")
	}
	sku := events.SKU(args[0])
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var ch store.ProductChange
	if *price >= 0 {
		p := catalog.Cents(*price)
		ch.Price = &p
	}
	if *stock >= 0 {
		ch.Stock = stock
	}
	if *name != "" {
		ch.Name = name
	}
	if ch == (store.ProductChange{}) {
		return errors.New("nothing to change: give --price, --stock or --name")
	}
	db, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	r, err := redisstore.Open(ctx, c.redisConfig())
	if err != nil {
		return err
	}
	defer r.Close()
	p, err := redisstore.NewProductCache(r, store.NewCatalog(db), redisstore.ProductCacheConfig{}).UpdateProduct(ctx, sku, ch)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "%s %q price %s (%d cents) stock %d\n", p.SKU, p.Name, p.Price, int64(p.Price), p.Stock)
	return nil
}

func (c *cli) redisConfig() redisstore.Config {
	cfg := c.Common.Redis
	cfg.Logger = c.Log
	return cfg
}
