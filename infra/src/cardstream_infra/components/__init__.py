"""One construct per logical unit of cardstream's AWS footprint; stacks compose them."""
