using System.Diagnostics;

namespace DeltaMigrate.Engine.Delta;

/// <summary>
/// Cuts the transcoder's running counters into passes: at each pass boundary the counters' growth since
/// the last boundary becomes a <see cref="StreamPass"/>. Written by the transcoder's thread, read from any.
/// </summary>
internal sealed class PassRecorder
{
    private readonly DeltaCounters _counters;
    private readonly Func<long> _outputBytes;
    private readonly long _started = Stopwatch.GetTimestamp();
    private readonly List<StreamPass> _passes = [];
    private Mark _open;

    public PassRecorder(DeltaCounters counters, Func<long> outputBytes)
    {
        _counters = counters;
        _outputBytes = outputBytes;
        _open = Take();
    }

    /// <summary>Stopwatch timestamp the passes' times count from.</summary>
    public long Origin => _started;

    /// <summary>The passes closed so far (the open one joins when QEMU starts over or the stream ends).</summary>
    public IReadOnlyList<StreamPass> Snapshot()
    {
        lock (_passes)
        {
            return [.. _passes];
        }
    }

    /// <summary>QEMU started over: closes the open pass and opens the next.</summary>
    public void NextPass()
    {
        var now = Take();
        lock (_passes)
        {
            _passes.Add(Between(_passes.Count + 1, _open, now));
        }

        _open = now;
    }

    /// <summary>The stream ended: closes the open pass (the last one, with the device state), unless it is empty.</summary>
    public void Complete()
    {
        var now = Take();
        if (now.StreamBytes > _open.StreamBytes)
        {
            lock (_passes)
            {
                _passes.Add(Between(_passes.Count + 1, _open, now));
            }
        }

        _open = now;
    }

    private Mark Take() => new(
        Stopwatch.GetTimestamp(),
        DeltaCounters.Read(ref _counters.StreamBytes),
        _outputBytes(),
        DeltaCounters.Read(ref _counters.RawPages),
        DeltaCounters.Read(ref _counters.XbzrlePages),
        DeltaCounters.Read(ref _counters.ZeroPages),
        DeltaCounters.Read(ref _counters.UnchangedPages),
        DeltaCounters.Read(ref _counters.XbzrleBytes));

    private StreamPass Between(int pass, in Mark from, in Mark to) => new()
    {
        Pass = pass,
        Start = Stopwatch.GetElapsedTime(_started, from.Timestamp),
        Duration = Stopwatch.GetElapsedTime(from.Timestamp, to.Timestamp),
        StreamBytes = to.StreamBytes - from.StreamBytes,
        OutputBytes = to.OutputBytes - from.OutputBytes,
        RawPages = to.RawPages - from.RawPages,
        XbzrlePages = to.XbzrlePages - from.XbzrlePages,
        ZeroPages = to.ZeroPages - from.ZeroPages,
        UnchangedPages = to.UnchangedPages - from.UnchangedPages,
        XbzrleBytes = to.XbzrleBytes - from.XbzrleBytes,
    };

    private readonly record struct Mark(long Timestamp, long StreamBytes, long OutputBytes, long RawPages, long XbzrlePages,
        long ZeroPages, long UnchangedPages, long XbzrleBytes);
}
