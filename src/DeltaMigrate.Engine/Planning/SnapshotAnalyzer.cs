using System.Buffers;
using DeltaMigrate.Engine.Codec;
using K4os.Compression.LZ4;

namespace DeltaMigrate.Engine.Planning;

/// <summary>
/// Compares snapshots of guest RAM (pmemsave files, or any streams of equal length) page by page,
/// reading them in lockstep so that memory use stays a few MiB whatever the RAM size.
/// </summary>
public static class SnapshotAnalyzer
{
    private const int PageSize = MemoryProfile.PageSize;
    private const int ChunkPages = 256; // 1 MiB per stream per read

    /// <summary>Analyses two or more snapshots taken in this order.</summary>
    /// <param name="snapshots">Readable streams of equal length, oldest first.</param>
    /// <param name="lz4Stride">LZ4-compress every n-th non-zero page of the last snapshot (1: all).</param>
    /// <param name="changedSampleLimit">At most this many changed pages per interval (the first ones) are XBZRLE-encoded and LZ4-compressed.</param>
    public static SnapshotAnalysis Analyze(IReadOnlyList<Stream> snapshots, int lz4Stride = 1, long changedSampleLimit = long.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(snapshots);
        if (snapshots.Count < 2)
        {
            throw new ArgumentException("Compare at least two snapshots.", nameof(snapshots));
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(lz4Stride);
        int count = snapshots.Count;
        int intervals = count - 1;
        var buffers = new byte[count][];
        var changed = new long[intervals];
        var encodeBuffer = new byte[PageSize];
        var lz4Buffer = new byte[LZ4Codec.MaximumOutputSize(PageSize)];
        long pages = 0, zero = 0, lz4Pages = 0, lz4Bytes = 0, hot = 0, redirtied = 0;
        long deltaPages = 0, deltaBytes = 0, overflows = 0, changedLz4Pages = 0, changedLz4Bytes = 0;
        long nonZeroSeen = 0;
        var encodedPerInterval = new long[intervals];
        var pool = ArrayPool<byte>.Shared;
        try
        {
            for (int i = 0; i < count; i++)
            {
                buffers[i] = pool.Rent(ChunkPages * PageSize);
            }

            var changedNow = new bool[intervals];
            while (true)
            {
                int read = ReadFull(snapshots[0], buffers[0], ChunkPages * PageSize);
                for (int i = 1; i < count; i++)
                {
                    int other = ReadFull(snapshots[i], buffers[i], ChunkPages * PageSize);
                    if (other != read)
                    {
                        throw new ArgumentException("The snapshots differ in length.", nameof(snapshots));
                    }
                }

                int chunkPages = read / PageSize;
                for (int p = 0; p < chunkPages; p++)
                {
                    var any = false;
                    for (int k = 0; k < intervals; k++)
                    {
                        var older = buffers[k].AsSpan(p * PageSize, PageSize);
                        var newer = buffers[k + 1].AsSpan(p * PageSize, PageSize);
                        changedNow[k] = !older.SequenceEqual(newer);
                        if (!changedNow[k])
                        {
                            continue;
                        }

                        any = true;
                        changed[k]++;
                        if (k > 0 && changedNow[k - 1])
                        {
                            redirtied++;
                        }

                        // The first changedSampleLimit changed pages of each interval are sized: bounded cost on a big, busy guest.
                        if (encodedPerInterval[k] < changedSampleLimit)
                        {
                            encodedPerInterval[k]++;
                            int size = Xbzrle.Encode(older, newer, encodeBuffer);
                            if (size == Xbzrle.Overflow)
                            {
                                overflows++;
                            }
                            else
                            {
                                deltaPages++;
                                deltaBytes += size;
                            }

                            changedLz4Pages++;
                            changedLz4Bytes += Lz4Size(newer, lz4Buffer);
                        }
                    }

                    if (any)
                    {
                        hot++;
                    }

                    var last = buffers[count - 1].AsSpan(p * PageSize, PageSize);
                    if (!last.ContainsAnyExcept((byte)0))
                    {
                        zero++;
                    }
                    else if (nonZeroSeen++ % lz4Stride == 0)
                    {
                        lz4Pages++;
                        lz4Bytes += Lz4Size(last, lz4Buffer);
                    }
                }

                pages += chunkPages;
                if (read < ChunkPages * PageSize)
                {
                    break;
                }
            }
        }
        finally
        {
            foreach (var buffer in buffers)
            {
                if (buffer is not null)
                {
                    pool.Return(buffer);
                }
            }
        }

        return new SnapshotAnalysis
        {
            Pages = pages,
            ZeroPages = zero,
            Lz4SampledPages = lz4Pages,
            Lz4Bytes = lz4Bytes,
            ChangedPages = changed,
            HotSetPages = hot,
            RedirtiedPages = redirtied,
            DeltaPages = deltaPages,
            DeltaBytes = deltaBytes,
            DeltaOverflows = overflows,
            ChangedLz4Pages = changedLz4Pages,
            ChangedLz4Bytes = changedLz4Bytes,
        };
    }

    /// <summary>Analyses snapshots held in memory (tests, small guests).</summary>
    public static SnapshotAnalysis Analyze(IReadOnlyList<byte[]> snapshots, int lz4Stride = 1) =>
        Analyze(snapshots.Select(s => (Stream)new MemoryStream(s, writable: false)).ToList(), lz4Stride);

    /// <summary>LZ4 size of a page; an incompressible page costs its own size (sent stored).</summary>
    private static int Lz4Size(ReadOnlySpan<byte> page, byte[] buffer)
    {
        int size = LZ4Codec.Encode(page, buffer, LZ4Level.L00_FAST);
        return size <= 0 || size > page.Length ? page.Length : size;
    }

    private static int ReadFull(Stream stream, byte[] buffer, int length)
    {
        int total = 0;
        while (total < length)
        {
            int n = stream.Read(buffer, total, length - total);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        return total - (total % PageSize);
    }
}
