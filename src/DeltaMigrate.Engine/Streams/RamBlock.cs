using System.Text;

namespace DeltaMigrate.Engine.Streams;

/// <summary>A RAMBlock announced by MEM_SIZE.</summary>
public sealed class RamBlock
{
    public RamBlock(string idStr, long usedLength, long? mrAddr = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(idStr);
        IdBytes = Encoding.UTF8.GetBytes(idStr);
        if (IdBytes.Length > 255)
        {
            throw new ArgumentException("A RAMBlock idstr is at most 255 bytes.", nameof(idStr));
        }

        IdStr = idStr;
        UsedLength = usedLength;
        MrAddr = mrAddr;
    }

    /// <summary>The RAMBlock name, e.g. <c>pc.ram</c>.</summary>
    public string IdStr { get; }

    /// <summary>The idstr as it travels on the wire (no NUL).</summary>
    public byte[] IdBytes { get; }

    /// <summary>Bytes in use.</summary>
    public long UsedLength { get; }

    /// <summary>Memory-region address (only sent with x-ignore-shared).</summary>
    public long? MrAddr { get; }

    public override string ToString() => $"{IdStr} ({UsedLength} bytes)";
}
