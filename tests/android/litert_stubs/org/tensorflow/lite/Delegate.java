package org.tensorflow.lite;

/** Stub of LiteRT's Delegate interface. */
public interface Delegate extends AutoCloseable {
    long getNativeHandle();

    @Override
    default void close() {
    }
}
