namespace DeltaMigrate.Engine.Migration;

/// <summary>How memory pages travel.</summary>
public enum CompressionMode
{
    /// <summary>QEMU's plain pre-copy: every dirty page sent whole.</summary>
    None,

    /// <summary>QEMU's built-in XBZRLE (its own cache, from the second pass on).</summary>
    Native,

    /// <summary>Our tunnel: XBZRLE deltas against our page cache, then LZ4.</summary>
    Delta,

    /// <summary>Our tunnel with LZ4 only, for comparison.</summary>
    Lz4,
}
