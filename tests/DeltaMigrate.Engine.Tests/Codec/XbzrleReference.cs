using DeltaMigrate.Engine.Codec;

namespace DeltaMigrate.Engine.Tests.Codec;

/// <summary>Slow, obviously-correct helpers the codec tests compare against.</summary>
internal static class XbzrleReference
{
    /// <summary>Every encoder kind this CPU can run (names, since the enum is internal).</summary>
    public static TheoryData<string> SupportedKinds()
    {
        var data = new TheoryData<string>();
        foreach (string kind in SupportedKindNames())
        {
            data.Add(kind);
        }

        return data;
    }

    public static List<string> SupportedKindNames() =>
        Enum.GetValues<XbzrleEncoderKind>().Where(Xbzrle.IsSupported).Select(kind => kind.ToString()).ToList();

    public static XbzrleEncoderKind Parse(string kind) => Enum.Parse<XbzrleEncoderKind>(kind);

    /// <summary>Maximal-run encoding, byte by byte, without any destination limit.</summary>
    public static byte[] EncodeMaximal(ReadOnlySpan<byte> oldPage, ReadOnlySpan<byte> newPage)
    {
        var output = new List<byte>();
        int i = 0;
        int len = newPage.Length;
        while (true)
        {
            int start = i;
            while (i < len && oldPage[i] == newPage[i])
            {
                i++;
            }

            if (i == len)
            {
                return output.ToArray();
            }

            PutLength(output, i - start);
            start = i;
            while (i < len && oldPage[i] != newPage[i])
            {
                i++;
            }

            PutLength(output, i - start);
            for (int k = start; k < i; k++)
            {
                output.Add(newPage[k]);
            }

            if (i == len)
            {
                return output.ToArray();
            }
        }
    }

    private static void PutLength(List<byte> output, int value)
    {
        if (value < 0x80)
        {
            output.Add((byte)value);
        }
        else
        {
            output.Add((byte)((value & 0x7F) | 0x80));
            output.Add((byte)(value >> 7));
        }
    }
}
