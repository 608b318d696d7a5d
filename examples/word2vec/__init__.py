"""The data side of the word2vec example: the offline corpus (`corpus`), the vocabulary with its
subsampling, noise table and Huffman tree (`vocab`), and the training pairs and batches
(`batches`), all plain vectorized NumPy."""
