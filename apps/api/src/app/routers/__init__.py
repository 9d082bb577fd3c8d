"""HTTP routers, one module per noun."""
