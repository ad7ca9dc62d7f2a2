namespace DeltaMigrate.Engine.Tunnel;

/// <summary>The stream writer's output, straight into the tunnel's frames.</summary>
internal sealed class TunnelWriteStream(TunnelSender tunnel, bool flushFrames = false) : System.IO.Stream
{
    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
        tunnel.WriteAsync(buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        tunnel.WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) =>
        tunnel.WriteAsync(buffer.AsMemory(offset, count), CancellationToken.None).AsTask().GetAwaiter().GetResult();

    // The writer flushes at the end of the stream; the tunnel's own CompleteAsync sends the last frame.
    // A stream whose QEMU waits for an answer before closing (a return path) is flushed on demand.
    public override Task FlushAsync(CancellationToken cancellationToken) =>
        flushFrames ? tunnel.FlushAsync(cancellationToken).AsTask() : Task.CompletedTask;

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}
