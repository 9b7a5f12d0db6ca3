package org.melkit.demo;

import java.io.Closeable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

import org.melkit.core.ModelCard;
import org.melkit.core.Postprocessor;
import org.melkit.core.Prediction;
import org.melkit.core.TensorSpec;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;
import org.tensorflow.lite.gpu.CompatibilityList;
import org.tensorflow.lite.gpu.GpuDelegate;

/**
 * The only class that touches LiteRT (Interpreter API). Kept apart so that an APK built without the
 * LiteRT runtime can start, find out with {@link RuntimeCheck#missing()} and say so instead of crashing:
 * this class is loaded only once the runtime is known to be there.
 */
final class LiteRtClassifier implements Closeable {
    private final Interpreter interpreter;
    private final ModelCard card;
    private GpuDelegate gpu;
    /** What actually runs the model ("GPU" or "CPU"), and why not the GPU when it was asked for. */
    final String backend;
    final String note;
    final int threads;
    final boolean gpuRequested;

    LiteRtClassifier(ByteBuffer model, ModelCard card, int threads, boolean useGpu) {
        this.card = card;
        this.threads = threads;
        this.gpuRequested = useGpu;
        Interpreter.Options options = new Interpreter.Options();
        options.setNumThreads(threads);
        String why = "";
        if (useGpu) {
            why = addGpu(options);
        }
        backend = gpu != null ? "GPU" : "CPU";
        note = why;
        interpreter = new Interpreter(model, options);
        check(interpreter.getInputTensor(0), card.input, "input");
        int outputs = card.hasDomainGuard() ? card.domainOutputIndex + 1 : 1;
        if (interpreter.getOutputTensorCount() != outputs) {
            throw new IllegalStateException("model has " + interpreter.getOutputTensorCount()
                    + " outputs but its card says " + outputs);
        }
        check(interpreter.getOutputTensor(0), card.output, "output");
        if (card.hasDomainGuard()) {
            check(interpreter.getOutputTensor(card.domainOutputIndex), card.domainOutput, "domain guard output");
        }
    }

    /** Adds the GPU delegate when the device supports it; returns why not otherwise. */
    private String addGpu(Interpreter.Options options) {
        CompatibilityList compat = null;
        try {
            compat = new CompatibilityList();
            if (!compat.isDelegateSupportedOnThisDevice()) {
                return "GPU delegate not supported on this device";
            }
            gpu = new GpuDelegate(compat.getBestOptionsForThisDevice());
            options.addDelegate(gpu);
            return "";
        } catch (Throwable t) {  // no GPU library in the APK, driver trouble: the CPU still works
            gpu = null;
            return "GPU delegate unavailable: " + t;
        } finally {
            if (compat != null) {
                compat.close();
            }
        }
    }

    /** The card must describe the model the interpreter loaded, or the core would feed it wrongly. */
    private static void check(Tensor t, TensorSpec spec, String what) {
        String dtype = dtypeName(t.dataType());
        if (!dtype.equals(spec.dtype) || !Arrays.equals(t.shape(), spec.shape)) {
            throw new IllegalStateException("model " + what + " is " + dtype + Arrays.toString(t.shape())
                    + " but its card says " + spec);
        }
    }

    private static String dtypeName(DataType t) {
        if (t == DataType.UINT8) {
            return "uint8";
        }
        if (t == DataType.INT8) {
            return "int8";
        }
        if (t == DataType.FLOAT32) {
            return "float32";
        }
        return String.valueOf(t);
    }

    /** Runs one input (the core's bytes); {@code elapsedMs[0]} receives the interpreter time. */
    Prediction classify(byte[] input, double[] elapsedMs) {
        ByteBuffer in = ByteBuffer.allocateDirect(input.length).order(ByteOrder.nativeOrder());
        in.put(input);
        in.rewind();
        ByteBuffer out = ByteBuffer.allocateDirect(card.output.numBytes()).order(ByteOrder.nativeOrder());
        ByteBuffer domain = null;
        long t0 = System.nanoTime();
        if (card.hasDomainGuard()) {
            domain = ByteBuffer.allocateDirect(card.domainOutput.numBytes()).order(ByteOrder.nativeOrder());
            Map<Integer, Object> outputs = new HashMap<Integer, Object>();
            outputs.put(0, out);
            outputs.put(card.domainOutputIndex, domain);
            interpreter.runForMultipleInputsOutputs(new Object[] {in}, outputs);
        } else {
            interpreter.run(in, out);
        }
        elapsedMs[0] = (System.nanoTime() - t0) / 1e6;
        byte[] raw = bytes(out, card.output);
        return domain == null ? Postprocessor.predict(raw, card)
                : Postprocessor.predict(raw, bytes(domain, card.domainOutput), card);
    }

    private static byte[] bytes(ByteBuffer b, TensorSpec spec) {
        byte[] raw = new byte[spec.numBytes()];
        b.rewind();
        b.get(raw);
        return raw;
    }

    @Override
    public void close() {
        interpreter.close();
        if (gpu != null) {
            gpu.close();
        }
    }
}
