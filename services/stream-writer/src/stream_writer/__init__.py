"""KCL-style Kinesis consumer: DynamoDB leases and fenced checkpoints, batches records into S3."""
