"""The host input pipeline the data sources share: TensorFlow on demand, decoding, tf.data batching, in-memory batches, evaluation splits, class lists, device prefetch."""
