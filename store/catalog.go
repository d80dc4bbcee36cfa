package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
)

// Catalog is the products in the database: the handlers read names and
// prices through it (or through the Redis cache in front of it), and
// `orderctl product` changes them.
type Catalog struct{ db *DB }

// NewCatalog returns the catalog on db.
func NewCatalog(db *DB) *Catalog { return &Catalog{db: db} }

// ProductChange is a change to one product; nil fields stay as they are.
type ProductChange struct {
	Name  *string
	Price *catalog.Cents
	Stock *int
}

// UpdateProduct changes a product and bumps its version; it returns the
// product as it now is and its new version.
func (c *Catalog) UpdateProduct(ctx context.Context, sku events.SKU, ch ProductChange) (catalog.Product, int64, error) {
	var (
		p       catalog.Product
		version int64
	)
	err := c.db.pool.QueryRow(ctx, `
		UPDATE products SET name = coalesce($2, name), price_cents = coalesce($3, price_cents),
		       stock = coalesce($4, stock), version = version + 1, updated_at = now()
		WHERE sku = $1
		RETURNING sku, name, price_cents, stock, version`, string(sku), ch.Name, ch.Price, ch.Stock).
		Scan(&p.SKU, &p.Name, &p.Price, &p.Stock, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, 0, fmt.Errorf("update product %s: no such product", sku)
	}
	if err != nil {
		return p, 0, fmt.Errorf("update product %s: %w", sku, err)
	}
	return p, version, nil
}

// Products reads catalog data from the database (no cache): the handlers'
// catalog port where there is no Redis.
func (c *Catalog) Products(ctx context.Context, skus []events.SKU) (map[events.SKU]catalog.Product, error) {
	out, _, err := c.VersionedProducts(ctx, skus)
	return out, err
}

// VersionedProducts reads products with their versions
// (redisstore.ProductSource).
func (c *Catalog) VersionedProducts(ctx context.Context, skus []events.SKU) (map[events.SKU]catalog.Product, map[events.SKU]int64, error) {
	db := c.db
	out := make(map[events.SKU]catalog.Product, len(skus))
	versions := make(map[events.SKU]int64, len(skus))
	err := db.run(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		rows, err := conn.Query(ctx, `SELECT sku, name, price_cents, stock, version FROM products WHERE sku = ANY($1::text[])`, skuStrings(skus))
		if err != nil {
			return fmt.Errorf("query: %w", err)
		}
		var (
			p catalog.Product
			v int64
		)
		if _, err := pgx.ForEachRow(rows, []any{&p.SKU, &p.Name, &p.Price, &p.Stock, &v}, func() error {
			out[p.SKU], versions[p.SKU] = p, v
			return nil
		}); err != nil {
			return fmt.Errorf("read rows: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("load products: %w", err)
	}
	return out, versions, nil
}
