using CsCheck;
using DeltaMigrate.Engine.Tests.Tunnel;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Tunnel;

namespace DeltaMigrate.Engine.Tests.Transport;

/// <summary>The wire codecs: the receiver's frame checks and decoder against hostile input, and every codec through a real tunnel.</summary>
public sealed class WireCodecTests
{
    private static readonly TimeSpan TestTimeout = TimeSpan.FromSeconds(60);

    public static TheoryData<int, int> EveryCodec => new()
    {
        { (int)WireCodec.Raw, 0 }, { (int)WireCodec.Lz4, 0 }, { (int)WireCodec.Zstd, -1 }, { (int)WireCodec.Zstd, 1 }, { (int)WireCodec.Zstd, 3 }, { (int)WireCodec.Zstd, 6 },
    };

    [Fact]
    public void EncodeThenDecode_GivesTheInputBack_ForEveryCodec() =>
        Gen.Select(Gen.Int[0, 3], Gen.Byte[0, 3].Array[0, 20_000], Gen.Int[1, 4]).Sample((pick, bytes, level) =>
        {
            // Few distinct byte values: data that does and does not compress, and every length from empty up.
            CodecOption option = pick switch { 0 => CodecOption.Lz4, 1 => CodecOption.Zstd(-level), 2 => CodecOption.Zstd(level), _ => CodecOption.Zstd(6) };
            using var encoder = new FrameEncoder();
            using var decoder = new FrameDecoder();
            var packed = new byte[FrameEncoder.MaxOutput(bytes.Length)];
            int length = encoder.Encode(option, bytes, packed);
            Assert.True(length > 0, $"{option} gave {length}");
            var output = new byte[bytes.Length];
            decoder.Decode(option.Codec, packed.AsSpan(0, length), output, 0);
            Assert.Equal(bytes, output);
        }, iter: 300);

    [Fact]
    public void Decoder_OnArbitraryPayloads_DecodesExactlyOrReportsCorruption() =>
        Gen.Select(Gen.Bool, Gen.Byte.Array[0, 2000], Gen.Int[0, 70_000]).Sample((zstd, payload, rawLength) =>
        {
            using var decoder = new FrameDecoder();
            var output = new byte[rawLength];
            try
            {
                decoder.Decode(zstd ? WireCodec.Zstd : WireCodec.Lz4, payload, output, 7);
            }
            catch (TunnelException ex)
            {
                Assert.Equal(TunnelException.Corrupt, ex.ErrorId);
            }
        }, iter: 5_000);

    [Fact]
    public void Decoder_OnDamagedRealFrames_DecodesExactlyOrReportsCorruption()
    {
        byte[] original = TunnelTestKit.CompressibleBytes(64 * 1024, 5);
        using var encoder = new FrameEncoder();
        foreach (CodecOption option in new[] { CodecOption.Lz4, CodecOption.Zstd(-1), CodecOption.Zstd(3) })
        {
            var packed = new byte[FrameEncoder.MaxOutput(original.Length)];
            int length = encoder.Encode(option, original, packed);
            // Flip, cut or lengthen a valid frame, and state wrong raw lengths.
            Gen.Select(Gen.Int[0, length - 1], Gen.Byte[1, 255], Gen.Int[-3, 3], Gen.Int[-100, 100]).Sample((at, mask, cut, rawDelta) =>
            {
                byte[] damaged = packed[..Math.Clamp(length + cut, 0, packed.Length)];
                damaged[Math.Min(at, damaged.Length - 1)] ^= mask;
                var output = new byte[Math.Max(0, original.Length + rawDelta)];
                using var decoder = new FrameDecoder();
                try
                {
                    decoder.Decode(option.Codec, damaged, output, 1);
                    Assert.Equal(original.Length, output.Length); // accepted: then it decoded to exactly the stated length
                }
                catch (TunnelException ex)
                {
                    Assert.Equal(TunnelException.Corrupt, ex.ErrorId);
                }
            }, iter: 2_000);
        }
    }

    [Fact]
    public async Task FrameReader_AcceptsExactlyTheValidTypeFlagsAndLengthCombinations()
    {
        byte[] key = new byte[Protocol.KeyLength];
        key[0] = 9;
        foreach (FrameType type in new[] { FrameType.Data, FrameType.End, FrameType.KeepAlive, FrameType.Return, (FrameType)0, (FrameType)11 })
        {
            for (int flags = 0; flags < 256; flags++)
            {
                foreach (var (payload, raw) in new[] { (10, 10), (10, 20), (20, 10) })
                {
                    var wire = new MemoryStream();
                    using (var writer = new FrameWriter(wire, key))
                    {
                        await writer.SendAsync(Protocol.Rent(payload), type, (byte)flags, payload, raw, CancellationToken.None);
                    }

                    wire.Position = 0;
                    using var reader = new FrameReader(wire, key);
                    bool valid = type is >= FrameType.Data and <= FrameType.Return
                        && (flags == 0 ? payload == raw : flags is 1 or 2 && type == FrameType.Data && payload < raw);
                    try
                    {
                        Frame frame = await reader.ReadAsync(CancellationToken.None);
                        Assert.True(valid, $"type {type}, flags {flags}, {payload}/{raw} was accepted");
                        Assert.Equal((WireCodec)flags, frame.Codec);
                    }
                    catch (TunnelException ex) when (ex.ErrorId == TunnelException.Corrupt)
                    {
                        Assert.False(valid, $"type {type}, flags {flags}, {payload}/{raw} was refused: {ex.Message}");
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(EveryCodec))]
    public async Task EveryCodec_RoundTripsThroughTheTunnel_AndIsCountedOnBothEnds(int codec, int level)
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        var option = new CodecOption((WireCodec)codec, level);
        byte[] data = [.. TunnelTestKit.CompressibleBytes(3 << 20, 1), .. TunnelTestKit.RandomBytes(1 << 20, 2), .. TunnelTestKit.CompressibleBytes(1 << 20, 3)];
        var options = new TunnelOptions { FrameSize = 64 * 1024, Adaptive = true, Codecs = [option] };
        var (received, sender, receiver) = await TransferAsync(data, options, cts.Token);

        Assert.True(data.AsSpan().SequenceEqual(received), "received bytes differ");
        Assert.Equal(data.Length, receiver.PayloadBytes);
        Assert.Equal(sender.Frames, receiver.Frames);
        // The compressible 4 MiB go with the codec, the random 1 MiB raw (compressing would make it larger).
        var used = Assert.Single(sender.Codecs, c => c.Codec == option.Name);
        Assert.True(used.StreamBytes >= 4 << 20, $"{option} carried {used.StreamBytes} bytes");
        Assert.Equal(sender.Codecs.Sum(c => c.StreamBytes), data.Length);
        Assert.Equal(sender.Codecs.Sum(c => c.WireBytes), receiver.Codecs.Sum(c => c.WireBytes));
        var seen = Assert.Single(receiver.Codecs, c => c.Codec == new CodecOption((WireCodec)codec).Name);
        Assert.Equal(used.Frames, seen.Frames);
        if (option.Codec != WireCodec.Raw)
        {
            Assert.True(used.WireBytes < used.StreamBytes / 2, $"{option}: {used.StreamBytes} -> {used.WireBytes}");
            Assert.Equal(sender.Frames - used.Frames, receiver.Codecs.Single(c => c.Codec == "raw").Frames);
        }
    }

    [Fact]
    public async Task Adaptive_OnAPacedLink_PacksGuestLikeDataWithZstd()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        // This data packs 30x with LZ4 and 60x with zstd: a 256 KiB/s link takes 8 and 16 MB/s of it, so zstd
        // wins unless its encoder falls below 32 MB/s (seen above 100 even with the 2 cores loaded 25 deep;
        // at 1 MiB/s a full test run once made the CPU the limit, and LZ4 rightly won).
        byte[] data = TunnelTestKit.CompressibleBytes(8 << 20, 11);
        var options = new TunnelOptions { FrameSize = 64 * 1024, Adaptive = true, BandwidthBytesPerSecond = 256 << 10 };
        var (received, sender, _) = await TransferAsync(data, options, cts.Token);

        Assert.True(data.AsSpan().SequenceEqual(received), "received bytes differ");
        long zstd = sender.Codecs.Where(c => c.Codec.StartsWith("zstd", StringComparison.Ordinal)).Sum(c => c.StreamBytes);
        Assert.True(zstd > data.Length * 3 / 4, $"zstd carried {zstd} of {data.Length} bytes: {sender}");
    }

    [Fact]
    public async Task Adaptive_OnIncompressibleData_SendsEveryFrameRaw()
    {
        using var cts = new CancellationTokenSource(TestTimeout);
        byte[] data = TunnelTestKit.RandomBytes(4 << 20, 12);
        var options = new TunnelOptions { FrameSize = 64 * 1024, Adaptive = true, BandwidthBytesPerSecond = 16 << 20 };
        var (received, sender, receiver) = await TransferAsync(data, options, cts.Token);

        Assert.True(data.AsSpan().SequenceEqual(received), "received bytes differ");
        Assert.Equal(0, sender.CompressedFrames);
        Assert.Equal("raw", Assert.Single(receiver.Codecs).Codec);
    }

    private static async Task<(byte[] Received, TunnelStats Sender, TunnelStats Receiver)> TransferAsync(byte[] data, TunnelOptions options, CancellationToken ct)
    {
        var token = MigrationToken.Create();
        await using var listener = TunnelListener.Start(TunnelTestKit.Loopback, token);
        var destination = new MemoryStream();
        Task<TunnelStats> receive = listener.ReceiveAsync(_ => Task.FromResult<System.IO.Stream>(destination), ct);
        await using var sender = await TunnelSender.ConnectAsync("127.0.0.1", listener.LocalEndpoint.Port, token, options, null, ct);
        await TunnelTestKit.WriteRaggedAsync(sender, data, ct);
        await sender.CompleteAsync(ct);
        return (destination.ToArray(), sender.Stats, await receive);
    }
}
