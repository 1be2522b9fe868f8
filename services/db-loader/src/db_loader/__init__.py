"""SQS-fed loader: landed S3 objects into normalized PostgreSQL, exactly once in effect."""
