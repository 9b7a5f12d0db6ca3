package org.tensorflow.lite;

import java.nio.ByteBuffer;
import java.util.Map;

/** Stub of LiteRT's Interpreter: the constructors and methods melkit's app calls, nothing else. */
public final class Interpreter implements AutoCloseable {
    /** Stub of Interpreter.Options. */
    public static class Options {
        public Options() {
        }

        public Options setNumThreads(int numThreads) {
            throw new UnsupportedOperationException("compile-only stub");
        }

        public Options addDelegate(Delegate delegate) {
            throw new UnsupportedOperationException("compile-only stub");
        }
    }

    public Interpreter(ByteBuffer byteBuffer) {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public Interpreter(ByteBuffer byteBuffer, Options options) {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public void run(Object input, Object output) {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public void runForMultipleInputsOutputs(Object[] inputs, Map<Integer, Object> outputs) {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public int getOutputTensorCount() {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public Tensor getInputTensor(int inputIndex) {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public Tensor getOutputTensor(int outputIndex) {
        throw new UnsupportedOperationException("compile-only stub");
    }

    @Override
    public void close() {
        throw new UnsupportedOperationException("compile-only stub");
    }
}
