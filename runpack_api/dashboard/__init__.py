"""The web dashboard: one template per page over a shared base, data fetched by the browser."""
