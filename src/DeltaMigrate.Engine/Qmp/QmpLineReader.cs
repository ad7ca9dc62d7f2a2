namespace DeltaMigrate.Engine.Qmp;

/// <summary>Splits a byte stream into newline-terminated messages without decoding them.</summary>
internal sealed class QmpLineReader
{
    /// <summary>Largest single message accepted; QMP replies are a few KiB, this only guards against a runaway peer.</summary>
    public const int MaxMessageBytes = 16 * 1024 * 1024;

    private readonly Stream _stream;
    private byte[] _buffer = new byte[16 * 1024];
    private int _start;
    private int _end;
    private int _scanned;

    public QmpLineReader(Stream stream) => _stream = stream;

    /// <summary>
    /// Returns the next line without its terminator (valid until the next call), or null at end of stream.
    /// A final line without a newline is returned before the end.
    /// </summary>
    public async ValueTask<ReadOnlyMemory<byte>?> ReadLineAsync(CancellationToken ct)
    {
        while (true)
        {
            int newline = Array.IndexOf(_buffer, (byte)'\n', _scanned, _end - _scanned);
            if (newline >= 0)
            {
                var line = new ReadOnlyMemory<byte>(_buffer, _start, newline - _start);
                _start = newline + 1;
                _scanned = _start;
                return line;
            }

            _scanned = _end;
            if (_end - _start >= MaxMessageBytes)
            {
                throw new InvalidDataException($"QMP message longer than {MaxMessageBytes} bytes without a newline.");
            }

            MakeRoom();
            int read = await _stream.ReadAsync(_buffer.AsMemory(_end), ct).ConfigureAwait(false);
            if (read == 0)
            {
                if (_end > _start)
                {
                    var rest = new ReadOnlyMemory<byte>(_buffer, _start, _end - _start);
                    _start = _end;
                    _scanned = _end;
                    return rest;
                }

                return null;
            }

            _end += read;
        }
    }

    private void MakeRoom()
    {
        if (_start > 0)
        {
            int pending = _end - _start;
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, pending);
            _scanned -= _start;
            _end = pending;
            _start = 0;
        }

        if (_end == _buffer.Length)
        {
            Array.Resize(ref _buffer, _buffer.Length * 2);
        }
    }
}
