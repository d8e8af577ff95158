"""One module per phase; each is a short recipe over plan, render, execute and tracking."""
