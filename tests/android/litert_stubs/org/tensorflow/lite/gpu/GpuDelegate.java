package org.tensorflow.lite.gpu;

import org.tensorflow.lite.Delegate;

/** Stub of litert-gpu's GpuDelegate. */
public class GpuDelegate implements Delegate {
    public GpuDelegate() {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public GpuDelegate(GpuDelegateFactory.Options options) {
        throw new UnsupportedOperationException("compile-only stub");
    }

    @Override
    public long getNativeHandle() {
        throw new UnsupportedOperationException("compile-only stub");
    }

    @Override
    public void close() {
        throw new UnsupportedOperationException("compile-only stub");
    }
}
