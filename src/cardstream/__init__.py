"""cardstream command line and local stack."""
