using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace DeltaMigrate.Engine.Codec;

/// <summary>
/// The fast XBZRLE encoder: pages are compared as 64-byte chunks turned into 64-bit difference masks
/// (bit set = byte changed) and runs are walked with trailing-zero counts. Zero runs of one or two bytes
/// between changed bytes are merged into the non-zero run (the result is at most one byte per merged
/// non-zero run of 128 bytes or more larger than with maximal runs, usually smaller, and far cheaper to
/// find); long unchanged stretches are skipped with whole-block equality tests.
/// </summary>
internal static class XbzrleVectorEncoder
{
    /// <summary>Zero runs shorter than this between two non-zero runs are sent as part of a non-zero run.</summary>
    internal const int MergeBelow = 3;

    /// <summary>A non-zero run this long triggers one sampling check for a hopeless (nearly all changed) page.</summary>
    internal const int HopelessCheckAfter = 128;

    private const int SampleChunks = 8;

    internal static int Encode<T>(ReadOnlySpan<byte> oldPage, ReadOnlySpan<byte> newPage, Span<byte> destination)
        where T : struct, IDiffScanner
    {
        nuint len = (nuint)newPage.Length;
        nint dlen = destination.Length;
        ref byte a = ref MemoryMarshal.GetReference(oldPage);
        ref byte b = ref MemoryMarshal.GetReference(newPage);
        ref byte o = ref MemoryMarshal.GetReference(destination);

        // Memcmp-speed scan for the first change; unchanged pages end here.
        nuint p = FindDiff<T>(ref a, ref b, 0, len);
        if (p >= len)
        {
            return 0;
        }

        // The first zrun (maximal; 0 when the first byte changed).
        if (Xbzrle.LengthSize(p) + 2 > dlen)
        {
            return Xbzrle.Overflow;
        }

        nint d = Xbzrle.PutLength(ref o, 0, p);
        bool sampled = false;

        // Difference masks of the chunk holding the current position and of the chunk after it;
        // each chunk's mask is computed once (long unchanged stretches are skipped block-wise instead).
        nuint c = p & ~(nuint)63;
        ulong cur = ChunkDiff<T>(ref a, ref b, c, len);
        ulong next = ChunkDiff<T>(ref a, ref b, c + 64, len);

        while (true)
        {
            // nzrun from the changed byte p (in chunk c), with d + 2 <= dlen: it ends at the first q > p
            // where q, q+1 and q+2 all agree (bytes past the end agree).
            ulong keep = (ulong.MaxValue << (int)(p - c)) << 1;
            nuint q;
            while (true)
            {
                ulong e = ~cur;
                ulong en = ~next;
                ulong z3 = e & ((e >> 1) | (en << 63)) & ((e >> 2) | (en << 62)) & keep;
                if (z3 != 0)
                {
                    q = c + (nuint)BitOperations.TrailingZeroCount(z3);
                    break;
                }

                c += 64;
                cur = next;
                next = ChunkDiff<T>(ref a, ref b, c + 64, len);
                keep = ulong.MaxValue;

                // The run already holds c - p bytes: give up if they cannot fit, or (once) if a sample of
                // the rest of the page says the delta cannot win.
                nuint run = c - p;
                if ((nint)run > dlen - d - 1)
                {
                    return Xbzrle.Overflow;
                }

                if (!sampled && run >= HopelessCheckAfter)
                {
                    sampled = true;
                    if (LooksHopeless<T>(ref a, ref b, c, len, d + (nint)run + 2, dlen))
                    {
                        return Xbzrle.Overflow;
                    }
                }
            }

            nuint n = q - p;
            if (d + Xbzrle.LengthSize(n) + (nint)n > dlen)
            {
                return Xbzrle.Overflow;
            }

            d = Xbzrle.PutLength(ref o, d, n);
            ref byte target = ref Unsafe.Add(ref o, d);
            ref byte source = ref Unsafe.Add(ref b, p);
            if (n <= 32 && d + 32 <= dlen && p + 32 <= len)
            {
                // Short run: copy 32 bytes; what lands past the run is scratch, overwritten or unused.
                Unsafe.WriteUnaligned(ref target, Unsafe.ReadUnaligned<Vector128<byte>>(ref source));
                Unsafe.WriteUnaligned(ref Unsafe.Add(ref target, 16), Unsafe.ReadUnaligned<Vector128<byte>>(ref Unsafe.Add(ref source, 16)));
            }
            else
            {
                Xbzrle.CopyExact(ref target, ref source, n);
            }

            d += (nint)n;
            if (q >= len)
            {
                return (int)d;
            }

            // zrun from q: q .. q+2 agree, so look for the next change from q + 3.
            ulong m = cur & ((ulong.MaxValue << (int)(q - c)) << MergeBelow);
            nuint r;
            if (m != 0)
            {
                r = c + (nuint)BitOperations.TrailingZeroCount(m);
            }
            else if (next != 0)
            {
                // (next's bits for q+1, q+2 are clear: they agree.)
                c += 64;
                cur = next;
                next = ChunkDiff<T>(ref a, ref b, c + 64, len);
                r = c + (nuint)BitOperations.TrailingZeroCount(cur);
            }
            else
            {
                r = FindDiffFrom<T>(ref a, ref b, c + 128, len);
                if (r >= len)
                {
                    return (int)d; // no trailing zrun
                }

                c = r & ~(nuint)63;
                cur = ChunkDiff<T>(ref a, ref b, c, len);
                next = ChunkDiff<T>(ref a, ref b, c + 64, len);
            }

            nuint z = r - q;
            if (d + Xbzrle.LengthSize(z) + 2 > dlen)
            {
                return Xbzrle.Overflow;
            }

            d = Xbzrle.PutLength(ref o, d, z);
            p = r;
        }
    }

    /// <summary>Difference mask of the 64 bytes at <paramref name="chunk"/>; bits at or past the end are 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong ChunkDiff<T>(ref byte a, ref byte b, nuint chunk, nuint len)
        where T : struct, IDiffScanner
    {
        if (chunk + 64 <= len)
        {
            return T.Diff64(ref a, ref b, chunk);
        }

        return chunk >= len ? 0 : TailDiff<T>(ref a, ref b, chunk, len);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ulong TailDiff<T>(ref byte a, ref byte b, nuint chunk, nuint len)
        where T : struct, IDiffScanner
    {
        nuint valid = len - chunk; // 1 .. 63
        if (len >= 64)
        {
            // The last 64 bytes of the page, shifted so bit 0 is byte 'chunk'.
            return T.Diff64(ref a, ref b, len - 64) >> (int)(64 - valid);
        }

        ulong mask = 0;
        for (nuint k = 0; k < valid; k++)
        {
            if (Unsafe.Add(ref a, chunk + k) != Unsafe.Add(ref b, chunk + k))
            {
                mask |= 1UL << (int)k;
            }
        }

        return mask;
    }

    /// <summary>First changed byte at or after <paramref name="start"/>, or <paramref name="len"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static nuint FindDiff<T>(ref byte a, ref byte b, nuint start, nuint len)
        where T : struct, IDiffScanner
    {
        if (start >= len)
        {
            return len;
        }

        nuint c = start & ~(nuint)63;
        ulong m = ChunkDiff<T>(ref a, ref b, c, len) & (ulong.MaxValue << (int)(start - c));
        if (m != 0)
        {
            return c + (nuint)BitOperations.TrailingZeroCount(m);
        }

        return FindDiffFrom<T>(ref a, ref b, c + 64, len);
    }

    /// <summary>First changed byte at or after the chunk-aligned <paramref name="c"/>, or <paramref name="len"/>.</summary>
    private static nuint FindDiffFrom<T>(ref byte a, ref byte b, nuint c, nuint len)
        where T : struct, IDiffScanner
    {
        while (c + T.BlockSize <= len && T.AllEqual(ref a, ref b, c))
        {
            c += T.BlockSize;
        }

        while (c < len)
        {
            ulong m = ChunkDiff<T>(ref a, ref b, c, len);
            if (m != 0)
            {
                return c + (nuint)BitOperations.TrailingZeroCount(m);
            }

            c += 64;
        }

        return len;
    }

    /// <summary>
    /// Samples <see cref="SampleChunks"/> chunks spread over [from, len) and estimates the encoded size as
    /// <paramref name="committed"/> plus the changed bytes extrapolated (run overhead ignored, so this
    /// underestimates); hopeless when that is above 15/16 of the destination.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool LooksHopeless<T>(ref byte a, ref byte b, nuint from, nuint len, nint committed, nint dlen)
        where T : struct, IDiffScanner
    {
        if (from >= len || len - from < 1024)
        {
            return false;
        }

        nuint span = len - from;
        nuint step = (span - 64) / (SampleChunks - 1);
        int changed = 0;
        for (nuint k = 0; k < SampleChunks; k++)
        {
            changed += BitOperations.PopCount(T.Diff64(ref a, ref b, from + (k * step)));
        }

        long estimate = committed + (long)((ulong)changed * span / (SampleChunks * 64));
        return estimate * 16 > (long)dlen * 15;
    }
}
