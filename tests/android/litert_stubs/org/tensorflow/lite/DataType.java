package org.tensorflow.lite;

/** Stub of LiteRT's tensor element type (the constants the app compares with). */
public enum DataType {
    FLOAT32, INT32, UINT8, INT64, STRING, BOOL, INT16, INT8
}
