using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace DeltaMigrate.Engine.Codec;

/// <summary>
/// Compares two pages 64 bytes at a time for <see cref="XbzrleVectorEncoder"/>. Implemented by structs so
/// the JIT compiles one specialised encoder per width.
/// </summary>
internal interface IDiffScanner
{
    /// <summary>Whether this width is hardware accelerated here.</summary>
    static abstract bool IsSupported { get; }

    /// <summary>Bytes <see cref="AllEqual"/> compares (a multiple of 64).</summary>
    static abstract nuint BlockSize { get; }

    /// <summary>Bit k set when a[offset + k] != b[offset + k], k in 0..63; needs offset + 64 &lt;= length.</summary>
    static abstract ulong Diff64(ref byte a, ref byte b, nuint offset);

    /// <summary>Whether <see cref="BlockSize"/> bytes at offset agree; needs offset + BlockSize &lt;= length.</summary>
    static abstract bool AllEqual(ref byte a, ref byte b, nuint offset);
}

/// <summary>AVX-512: one compare per 64 bytes, 256-byte equality blocks.</summary>
internal readonly struct Vector512Scanner : IDiffScanner
{
    public static bool IsSupported => Vector512.IsHardwareAccelerated;

    public static nuint BlockSize => 256;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Diff64(ref byte a, ref byte b, nuint offset) =>
        ~Vector512.Equals(Vector512.LoadUnsafe(ref a, offset), Vector512.LoadUnsafe(ref b, offset)).ExtractMostSignificantBits();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AllEqual(ref byte a, ref byte b, nuint offset)
    {
        Vector512<byte> x0 = Vector512.LoadUnsafe(ref a, offset) ^ Vector512.LoadUnsafe(ref b, offset);
        Vector512<byte> x1 = Vector512.LoadUnsafe(ref a, offset + 64) ^ Vector512.LoadUnsafe(ref b, offset + 64);
        Vector512<byte> x2 = Vector512.LoadUnsafe(ref a, offset + 128) ^ Vector512.LoadUnsafe(ref b, offset + 128);
        Vector512<byte> x3 = Vector512.LoadUnsafe(ref a, offset + 192) ^ Vector512.LoadUnsafe(ref b, offset + 192);
        return ((x0 | x1) | (x2 | x3)) == Vector512<byte>.Zero;
    }
}

/// <summary>AVX2 (or another 256-bit ISA): two compares per 64 bytes, 128-byte equality blocks.</summary>
internal readonly struct Vector256Scanner : IDiffScanner
{
    public static bool IsSupported => Vector256.IsHardwareAccelerated;

    public static nuint BlockSize => 128;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Diff64(ref byte a, ref byte b, nuint offset)
    {
        uint lo = Vector256.Equals(Vector256.LoadUnsafe(ref a, offset), Vector256.LoadUnsafe(ref b, offset)).ExtractMostSignificantBits();
        uint hi = Vector256.Equals(Vector256.LoadUnsafe(ref a, offset + 32), Vector256.LoadUnsafe(ref b, offset + 32)).ExtractMostSignificantBits();
        return ~(((ulong)hi << 32) | lo);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AllEqual(ref byte a, ref byte b, nuint offset)
    {
        Vector256<byte> x0 = Vector256.LoadUnsafe(ref a, offset) ^ Vector256.LoadUnsafe(ref b, offset);
        Vector256<byte> x1 = Vector256.LoadUnsafe(ref a, offset + 32) ^ Vector256.LoadUnsafe(ref b, offset + 32);
        Vector256<byte> x2 = Vector256.LoadUnsafe(ref a, offset + 64) ^ Vector256.LoadUnsafe(ref b, offset + 64);
        Vector256<byte> x3 = Vector256.LoadUnsafe(ref a, offset + 96) ^ Vector256.LoadUnsafe(ref b, offset + 96);
        return ((x0 | x1) | (x2 | x3)) == Vector256<byte>.Zero;
    }
}

/// <summary>SSE2 / AdvSimd: four compares per 64 bytes, 64-byte equality blocks.</summary>
internal readonly struct Vector128Scanner : IDiffScanner
{
    public static bool IsSupported => Vector128.IsHardwareAccelerated;

    public static nuint BlockSize => 64;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Diff64(ref byte a, ref byte b, nuint offset)
    {
        ulong m0 = Vector128.Equals(Vector128.LoadUnsafe(ref a, offset), Vector128.LoadUnsafe(ref b, offset)).ExtractMostSignificantBits();
        ulong m1 = Vector128.Equals(Vector128.LoadUnsafe(ref a, offset + 16), Vector128.LoadUnsafe(ref b, offset + 16)).ExtractMostSignificantBits();
        ulong m2 = Vector128.Equals(Vector128.LoadUnsafe(ref a, offset + 32), Vector128.LoadUnsafe(ref b, offset + 32)).ExtractMostSignificantBits();
        ulong m3 = Vector128.Equals(Vector128.LoadUnsafe(ref a, offset + 48), Vector128.LoadUnsafe(ref b, offset + 48)).ExtractMostSignificantBits();
        return ~(m0 | (m1 << 16) | (m2 << 32) | (m3 << 48));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AllEqual(ref byte a, ref byte b, nuint offset)
    {
        Vector128<byte> x0 = Vector128.LoadUnsafe(ref a, offset) ^ Vector128.LoadUnsafe(ref b, offset);
        Vector128<byte> x1 = Vector128.LoadUnsafe(ref a, offset + 16) ^ Vector128.LoadUnsafe(ref b, offset + 16);
        Vector128<byte> x2 = Vector128.LoadUnsafe(ref a, offset + 32) ^ Vector128.LoadUnsafe(ref b, offset + 32);
        Vector128<byte> x3 = Vector128.LoadUnsafe(ref a, offset + 48) ^ Vector128.LoadUnsafe(ref b, offset + 48);
        return ((x0 | x1) | (x2 | x3)) == Vector128<byte>.Zero;
    }
}

/// <summary>No SIMD: eight 64-bit XORs per 64 bytes, "non-zero byte" bit trick, multiply to gather the bits.</summary>
internal readonly struct ScalarScanner : IDiffScanner
{
    public static bool IsSupported => true;

    public static nuint BlockSize => 64;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Diff64(ref byte a, ref byte b, nuint offset)
    {
        ulong mask = 0;
        for (int k = 0; k < 8; k++)
        {
            nuint o = offset + (nuint)(k * 8);
            ulong x = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref a, o)) ^ Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref b, o));
            mask |= NonZeroBytes(x) << (k * 8);
        }

        return mask;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AllEqual(ref byte a, ref byte b, nuint offset)
    {
        ulong x = 0;
        for (int k = 0; k < 8; k++)
        {
            nuint o = offset + (nuint)(k * 8);
            x |= Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref a, o)) ^ Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref b, o));
        }

        return x == 0;
    }

    /// <summary>Bit k set when byte k (little-endian) of <paramref name="x"/> is non-zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong NonZeroBytes(ulong x)
    {
        const ulong Low7 = 0x7F7F7F7F7F7F7F7FUL;
        ulong high = (((x & Low7) + Low7) | x) & ~Low7; // 0x80 in every non-zero byte
        return ((high >> 7) * 0x0102040810204080UL) >> 56;
    }
}
