"""Everything that touches the outside world: files, Kafka, sinks for detections and rejects."""
