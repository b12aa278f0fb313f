-- The tables of pipelines/postgres_orders.yaml.
CREATE TABLE IF NOT EXISTS customers (id text PRIMARY KEY, name text NOT NULL, tier text NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    order_id bigint PRIMARY KEY,
    customer text NOT NULL,
    customer_name text,
    customer_tier text,
    product_id text NOT NULL,
    quantity int NOT NULL CHECK (quantity > 0),
    placed_at timestamptz
);
