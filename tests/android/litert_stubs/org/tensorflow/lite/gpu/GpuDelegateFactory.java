package org.tensorflow.lite.gpu;

/** Stub of litert-gpu-api's GpuDelegateFactory (only its Options type is used). */
public class GpuDelegateFactory {
    /** Stub of GpuDelegateFactory.Options, what CompatibilityList recommends for a device. */
    public static class Options {
        public Options() {
        }
    }
}
