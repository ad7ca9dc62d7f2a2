namespace DeltaMigrate.Engine.Codec;

/// <summary>Which XBZRLE encoder implementation to run (internal: lets tests cover every path on one CPU).</summary>
internal enum XbzrleEncoderKind
{
    /// <summary>The fastest implementation this CPU accelerates.</summary>
    Auto = 0,

    /// <summary><see cref="Xbzrle.EncodeScalar"/>: maximal runs, byte-identical to QEMU's C encoder.</summary>
    Reference,

    /// <summary>The run-merging encoder with 64-bit scalar difference masks (no SIMD).</summary>
    Scalar,

    /// <summary>The run-merging encoder with 128-bit vector compares.</summary>
    Vector128,

    /// <summary>The run-merging encoder with 256-bit vector compares (AVX2).</summary>
    Vector256,

    /// <summary>The run-merging encoder with 512-bit vector compares (AVX-512).</summary>
    Vector512,
}
