package org.tensorflow.lite;

/** Stub of LiteRT's Tensor interface. */
public interface Tensor {
    DataType dataType();

    int[] shape();

    int numBytes();
}
