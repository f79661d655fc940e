"""Model helpers: tiny random-weight models built locally for CPU runs and tests."""
