package org.tensorflow.lite.gpu;

import java.io.Closeable;

/** Stub of litert-gpu's CompatibilityList (the GPU allowlist). */
public class CompatibilityList implements Closeable {
    public CompatibilityList() {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public boolean isDelegateSupportedOnThisDevice() {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public GpuDelegateFactory.Options getBestOptionsForThisDevice() {
        throw new UnsupportedOperationException("compile-only stub");
    }

    @Override
    public void close() {
        throw new UnsupportedOperationException("compile-only stub");
    }
}
