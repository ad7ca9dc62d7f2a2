using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace DeltaMigrate.Engine.Codec;

/// <summary>
/// QEMU-compatible XBZRLE page delta (see shared/reference/xbzrle.md): alternating zero runs (bytes where
/// the old and new page agree, as a ULEB128 length) and non-zero runs (a ULEB128 length followed by the NEW
/// bytes), always starting with a zero run and without a trailing zero run.
/// </summary>
/// <remarks>
/// Page lengths are limited to <see cref="MaxPageLength"/> because run lengths are 14-bit. Nothing here
/// allocates. <see cref="Encode(ReadOnlySpan{byte}, ReadOnlySpan{byte}, Span{byte})"/> may merge zero runs shorter than three bytes into the surrounding
/// non-zero run (never larger, at most one length byte more than maximal runs, and much faster on scattered
/// changes); <see cref="EncodeScalar"/> emits maximal runs, byte-identical to QEMU's C encoder.
/// </remarks>
public static class Xbzrle
{
    /// <summary>The largest run length the 14-bit ULEB128 length can express.</summary>
    public const int MaxRunLength = 0x3FFF;

    /// <summary>The largest page length the encoders accept (every run then fits in 14 bits).</summary>
    public const int MaxPageLength = MaxRunLength;

    /// <summary>The result of the encoders when the delta would not fit in the destination.</summary>
    public const int Overflow = -1;

    private static readonly XbzrleEncoderKind s_best = DetectBest();

    /// <summary>The encoder implementation <see cref="Encode(ReadOnlySpan{byte}, ReadOnlySpan{byte}, Span{byte})"/> uses on this CPU.</summary>
    internal static XbzrleEncoderKind BestKind => s_best;

    /// <summary>
    /// Encodes <paramref name="newPage"/> as a delta against <paramref name="oldPage"/> with the fastest
    /// vectorised encoder this CPU supports.
    /// </summary>
    /// <returns>
    /// The encoded length; 0 when the pages are identical; <see cref="Overflow"/> (-1) when the delta would
    /// exceed <paramref name="destination"/>, or when a long changed run made the encoder sample the rest of
    /// the page and the estimate says the delta would save less than 1/16 of the destination (a nearly
    /// all-changed page is given up after reading a fraction of it). Bytes of
    /// <paramref name="destination"/> past the returned length are unspecified, and so is all of it on overflow;
    /// nothing outside <paramref name="destination"/> is ever written.
    /// </returns>
    /// <exception cref="ArgumentException">The pages differ in length or are longer than <see cref="MaxPageLength"/>.</exception>
    public static int Encode(ReadOnlySpan<byte> oldPage, ReadOnlySpan<byte> newPage, Span<byte> destination)
    {
        ValidatePages(oldPage, newPage);
        return s_best switch
        {
            XbzrleEncoderKind.Vector512 => XbzrleVectorEncoder.Encode<Vector512Scanner>(oldPage, newPage, destination),
            XbzrleEncoderKind.Vector256 => XbzrleVectorEncoder.Encode<Vector256Scanner>(oldPage, newPage, destination),
            XbzrleEncoderKind.Vector128 => XbzrleVectorEncoder.Encode<Vector128Scanner>(oldPage, newPage, destination),
            _ => XbzrleVectorEncoder.Encode<ScalarScanner>(oldPage, newPage, destination),
        };
    }

    /// <summary>Encodes with a chosen implementation (tests and benchmarks).</summary>
    /// <exception cref="PlatformNotSupportedException">The implementation is not hardware accelerated here.</exception>
    internal static int Encode(ReadOnlySpan<byte> oldPage, ReadOnlySpan<byte> newPage, Span<byte> destination, XbzrleEncoderKind kind)
    {
        if (kind == XbzrleEncoderKind.Auto)
        {
            kind = s_best;
        }

        if (!IsSupported(kind))
        {
            throw new PlatformNotSupportedException($"XBZRLE encoder {kind} is not hardware accelerated on this CPU.");
        }

        ValidatePages(oldPage, newPage);
        return kind switch
        {
            XbzrleEncoderKind.Reference => EncodeScalarCore(oldPage, newPage, destination),
            XbzrleEncoderKind.Scalar => XbzrleVectorEncoder.Encode<ScalarScanner>(oldPage, newPage, destination),
            XbzrleEncoderKind.Vector128 => XbzrleVectorEncoder.Encode<Vector128Scanner>(oldPage, newPage, destination),
            XbzrleEncoderKind.Vector256 => XbzrleVectorEncoder.Encode<Vector256Scanner>(oldPage, newPage, destination),
            XbzrleEncoderKind.Vector512 => XbzrleVectorEncoder.Encode<Vector512Scanner>(oldPage, newPage, destination),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
    }

    /// <summary>Whether an implementation can run (accelerated) on this CPU.</summary>
    internal static bool IsSupported(XbzrleEncoderKind kind) => kind switch
    {
        XbzrleEncoderKind.Auto or XbzrleEncoderKind.Reference or XbzrleEncoderKind.Scalar => true,
        XbzrleEncoderKind.Vector128 => Vector128Scanner.IsSupported,
        XbzrleEncoderKind.Vector256 => Vector256Scanner.IsSupported,
        XbzrleEncoderKind.Vector512 => Vector512Scanner.IsSupported,
        _ => false,
    };

    /// <summary>
    /// Reference encoder: maximal runs, a machine word at a time, exactly the bytes QEMU's C encoder
    /// (migration/xbzrle.c) writes.
    /// </summary>
    /// <returns>
    /// The encoded length, 0 for identical pages, or <see cref="Overflow"/> (-1) when the encoding would
    /// exceed <paramref name="destination"/>. (QEMU's C encoder also gives up when fewer than two
    /// destination bytes remain before a trailing zero run, where the encoding in fact fits; this one
    /// returns that encoding, which QEMU's decoder accepts.)
    /// </returns>
    /// <exception cref="ArgumentException">The pages differ in length or are longer than <see cref="MaxPageLength"/>.</exception>
    public static int EncodeScalar(ReadOnlySpan<byte> oldPage, ReadOnlySpan<byte> newPage, Span<byte> destination)
    {
        ValidatePages(oldPage, newPage);
        return EncodeScalarCore(oldPage, newPage, destination);
    }

    /// <summary>
    /// Applies an XBZRLE delta INTO <paramref name="page"/> (which must hold the old content), with exactly
    /// the checks of QEMU's decoder: at least 2 bytes must remain where a zero run or a non-zero run starts;
    /// a zero-length zero run only at offset 0; no zero-length non-zero run; a ULEB128 length of at most
    /// 2 bytes whose second byte has no 0x80 bit; every run inside the page and the input.
    /// </summary>
    /// <returns>
    /// The offset just past the last byte written (0 for an empty delta), or -1 when the input is malformed.
    /// Like QEMU, runs before the malformed part have already been applied when -1 is returned.
    /// </returns>
    public static int Decode(ReadOnlySpan<byte> encoded, Span<byte> page)
    {
        int slen = encoded.Length;
        int dlen = page.Length;
        ref byte src = ref MemoryMarshal.GetReference(encoded);
        ref byte dst = ref MemoryMarshal.GetReference(page);
        int i = 0;
        int d = 0;

        while (i < slen)
        {
            // zrun
            if (slen - i < 2)
            {
                return -1;
            }

            int count = Unsafe.Add(ref src, i);
            if (count < 0x80)
            {
                if (count == 0 && i != 0)
                {
                    return -1;
                }

                i++;
            }
            else
            {
                int hi = Unsafe.Add(ref src, i + 1);
                if ((hi & 0x80) != 0)
                {
                    return -1;
                }

                count = (count & 0x7F) | (hi << 7);
                if (count == 0 && i != 0)
                {
                    return -1;
                }

                i += 2;
            }

            d += count;
            if (d > dlen)
            {
                return -1;
            }

            // nzrun
            if (slen - i < 2)
            {
                return -1;
            }

            count = Unsafe.Add(ref src, i);
            if (count < 0x80)
            {
                i++;
            }
            else
            {
                int hi = Unsafe.Add(ref src, i + 1);
                if ((hi & 0x80) != 0)
                {
                    return -1;
                }

                count = (count & 0x7F) | (hi << 7);
                i += 2;
            }

            if (count == 0 || count > dlen - d || count > slen - i)
            {
                return -1;
            }

            CopyExact(ref Unsafe.Add(ref dst, d), ref Unsafe.Add(ref src, i), (nuint)count);
            d += count;
            i += count;
        }

        return d;
    }

    /// <summary>Writes a 14-bit ULEB128 length (1 or 2 bytes) and returns how many bytes it took.</summary>
    internal static int WriteLength(Span<byte> destination, int value)
    {
        if ((uint)value > MaxRunLength)
        {
            throw new ArgumentOutOfRangeException(nameof(value));
        }

        if (value < 0x80)
        {
            destination[0] = (byte)value;
            return 1;
        }

        destination[1] = (byte)(value >> 7);
        destination[0] = (byte)(value | 0x80);
        return 2;
    }

    /// <summary>Reads a 14-bit ULEB128 length by QEMU's rules; returns the bytes read, or -1 when invalid.</summary>
    internal static int ReadLength(ReadOnlySpan<byte> source, out int value)
    {
        value = 0;
        if (source.IsEmpty)
        {
            return -1;
        }

        if (source[0] < 0x80)
        {
            value = source[0];
            return 1;
        }

        if (source.Length < 2 || (source[1] & 0x80) != 0)
        {
            return -1;
        }

        value = (source[0] & 0x7F) | (source[1] << 7);
        return 2;
    }

    /// <summary>Length in bytes of the ULEB128 form of a run length.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static nint LengthSize(nuint value) => value < 0x80 ? 1 : 2;

    /// <summary>Writes a ULEB128 run length at <paramref name="d"/> (no bounds check) and returns the new offset.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static nint PutLength(ref byte dst, nint d, nuint value)
    {
        if (value < 0x80)
        {
            Unsafe.Add(ref dst, d) = (byte)value;
            return d + 1;
        }

        Unsafe.Add(ref dst, d) = (byte)(value | 0x80);
        Unsafe.Add(ref dst, d + 1) = (byte)(value >> 7);
        return d + 2;
    }

    /// <summary>Copies exactly <paramref name="n"/> bytes (n &gt;= 1), fast for short runs, never touching other bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void CopyExact(ref byte dst, ref byte src, nuint n)
    {
        if (n >= 16)
        {
            if (n <= 32)
            {
                Vector128<byte> head = Unsafe.ReadUnaligned<Vector128<byte>>(ref src);
                Vector128<byte> tail = Unsafe.ReadUnaligned<Vector128<byte>>(ref Unsafe.Add(ref src, n - 16));
                Unsafe.WriteUnaligned(ref dst, head);
                Unsafe.WriteUnaligned(ref Unsafe.Add(ref dst, n - 16), tail);
            }
            else
            {
                Unsafe.CopyBlockUnaligned(ref dst, ref src, (uint)n);
            }
        }
        else if (n >= 8)
        {
            ulong head = Unsafe.ReadUnaligned<ulong>(ref src);
            ulong tail = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref src, n - 8));
            Unsafe.WriteUnaligned(ref dst, head);
            Unsafe.WriteUnaligned(ref Unsafe.Add(ref dst, n - 8), tail);
        }
        else if (n >= 4)
        {
            uint head = Unsafe.ReadUnaligned<uint>(ref src);
            uint tail = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref src, n - 4));
            Unsafe.WriteUnaligned(ref dst, head);
            Unsafe.WriteUnaligned(ref Unsafe.Add(ref dst, n - 4), tail);
        }
        else
        {
            byte first = src;
            byte last = Unsafe.Add(ref src, n - 1);
            if (n > 1)
            {
                Unsafe.Add(ref dst, 1) = Unsafe.Add(ref src, 1);
            }

            dst = first;
            Unsafe.Add(ref dst, n - 1) = last;
        }
    }

    private static void ValidatePages(ReadOnlySpan<byte> oldPage, ReadOnlySpan<byte> newPage)
    {
        if (oldPage.Length != newPage.Length)
        {
            throw new ArgumentException("The old and new page must have the same length.", nameof(oldPage));
        }

        if (newPage.Length > MaxPageLength)
        {
            throw new ArgumentException($"XBZRLE pages are at most {MaxPageLength} bytes long.", nameof(newPage));
        }
    }

    private static int EncodeScalarCore(ReadOnlySpan<byte> oldPage, ReadOnlySpan<byte> newPage, Span<byte> destination)
    {
        const ulong Ones = 0x0101010101010101UL;
        const ulong Highs = 0x8080808080808080UL;

        nint len = newPage.Length;
        nint dlen = destination.Length;
        ref byte a = ref MemoryMarshal.GetReference(oldPage);
        ref byte b = ref MemoryMarshal.GetReference(newPage);
        ref byte o = ref MemoryMarshal.GetReference(destination);
        nint i = 0;
        nint d = 0;

        while (true)
        {
            // zrun: a word at a time, then bytes
            nint start = i;
            while (i + 8 <= len && Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref a, i)) == Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref b, i)))
            {
                i += 8;
            }

            while (i < len && Unsafe.Add(ref a, i) == Unsafe.Add(ref b, i))
            {
                i++;
            }

            if (i == len)
            {
                return (int)d; // unchanged page (0), or the trailing zrun that is never sent
            }

            nuint zrun = (nuint)(i - start);
            if (d + LengthSize(zrun) + 2 > dlen)
            {
                return Overflow;
            }

            d = PutLength(ref o, d, zrun);

            // nzrun: a word at a time while no byte of the XOR is zero, then bytes
            start = i;
            while (i + 8 <= len)
            {
                ulong x = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref a, i)) ^ Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref b, i));
                if (((x - Ones) & ~x & Highs) != 0)
                {
                    break;
                }

                i += 8;
            }

            while (i < len && Unsafe.Add(ref a, i) != Unsafe.Add(ref b, i))
            {
                i++;
            }

            nuint nzrun = (nuint)(i - start);
            if (d + LengthSize(nzrun) + (nint)nzrun > dlen)
            {
                return Overflow;
            }

            d = PutLength(ref o, d, nzrun);
            CopyExact(ref Unsafe.Add(ref o, d), ref Unsafe.Add(ref b, start), nzrun);
            d += (nint)nzrun;
            if (i == len)
            {
                return (int)d;
            }
        }
    }

    private static XbzrleEncoderKind DetectBest()
    {
        if (Vector512Scanner.IsSupported)
        {
            return XbzrleEncoderKind.Vector512;
        }

        if (Vector256Scanner.IsSupported)
        {
            return XbzrleEncoderKind.Vector256;
        }

        return Vector128Scanner.IsSupported ? XbzrleEncoderKind.Vector128 : XbzrleEncoderKind.Scalar;
    }
}
