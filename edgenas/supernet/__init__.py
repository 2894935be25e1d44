"""The weight-sharing supernet: training on the user's data and per-sub-network accuracy."""
