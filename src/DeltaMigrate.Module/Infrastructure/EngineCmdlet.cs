using System.Collections.Concurrent;
using System.Management.Automation;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Logging;

namespace DeltaMigrate.Module.Infrastructure;

/// <summary>
/// Base for cmdlets that run engine work on the thread pool. Engine callbacks (log lines,
/// progress) arrive on other threads; they are queued and replayed on the pipeline thread,
/// the only thread where Write* is allowed. StopProcessing (Ctrl-C) cancels the engine.
/// </summary>
public abstract class EngineCmdlet : PSCmdlet, IDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private BlockingCollection<Action>? _queue;
    private int _pipelineThread;

    /// <summary>Engine logging mapped onto the Verbose, Debug and Warning streams.</summary>
    protected IEngineLogSink Logger => new PipelineLogSink(this);

    /// <summary>Runs engine work and pumps its output onto the pipeline until it ends.</summary>
    protected T RunEngine<T>(Func<CancellationToken, Task<T>> work)
    {
        using var queue = new BlockingCollection<Action>();
        _queue = queue;
        _pipelineThread = Environment.CurrentManagedThreadId;
        var task = Task.Run(async () =>
        {
            try
            {
                return await work(_stopping.Token);
            }
            finally
            {
                queue.CompleteAdding();
            }
        });
        try
        {
            foreach (var action in queue.GetConsumingEnumerable())
            {
                action();
            }
        }
        catch
        {
            // A Write* threw (the pipeline is stopping): the engine must finish its clean-up,
            // such as cancelling a migration and resuming the source, before the cmdlet returns.
            // What it still posts runs (a Write* now fails, and is dropped), so none of it waits forever.
            _stopping.Cancel();
            foreach (var action in queue.GetConsumingEnumerable())
            {
                try
                {
                    action();
                }
                catch (Exception)
                {
                    // the pipeline is stopping: output goes nowhere
                }
            }

            ((IAsyncResult)task).AsyncWaitHandle.WaitOne();
            throw;
        }
        finally
        {
            _queue = null;
        }

        return task.GetAwaiter().GetResult();
    }

    /// <summary>Runs an action on the pipeline thread: now if we are on it, else when the pump gets to it.</summary>
    internal void Post(Action action)
    {
        var queue = _queue;
        if (queue is null || Environment.CurrentManagedThreadId == _pipelineThread)
        {
            action();
            return;
        }

        try
        {
            queue.Add(action);
        }
        catch (InvalidOperationException)
        {
            // The work has ended and the pump with it: a late log line is dropped.
        }
    }

    /// <summary>
    /// Runs <paramref name="action"/> on the pipeline thread (Write*, remoting calls) for engine work
    /// that needs its result; faults if the action throws or the pump has already ended.
    /// </summary>
    internal Task<T> OnPipelineAsync<T>(Func<T> action)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        void Run()
        {
            try
            {
                done.TrySetResult(action());
            }
            catch (Exception e)
            {
                done.TrySetException(e);
            }
        }

        var queue = _queue;
        if (queue is null || Environment.CurrentManagedThreadId == _pipelineThread)
        {
            Run();
            return done.Task;
        }

        try
        {
            queue.Add(Run);
        }
        catch (InvalidOperationException)
        {
            done.TrySetException(new OperationCanceledException("The pipeline is no longer taking work."));
        }

        return done.Task;
    }

    internal Task OnPipelineAsync(Action action) => OnPipelineAsync(() =>
    {
        action();
        return true;
    });

    /// <summary>An IProgress whose reports run on the pipeline thread.</summary>
    protected IProgress<T> PipelineProgress<T>(Action<T> report) => new PostingProgress<T>(this, report);

    /// <summary>An ErrorRecord with the engine's stable id, a fitting category and the target.</summary>
    protected static ErrorRecord ToErrorRecord(Exception exception, object? target = null) => exception switch
    {
        EngineException e => new ErrorRecord(e, e.ErrorId, Category(e.Kind), e.Target ?? target),
        OperationCanceledException => new ErrorRecord(exception, "OperationStopped", ErrorCategory.OperationStopped, target),
        TimeoutException => new ErrorRecord(exception, "OperationTimeout", ErrorCategory.OperationTimeout, target),
        _ => new ErrorRecord(exception, "UnexpectedError", ErrorCategory.NotSpecified, target),
    };

    protected static ErrorRecord Error(string id, ErrorCategory category, object? target, string message) =>
        new(new InvalidOperationException(message), id, category, target);

    private static ErrorCategory Category(ErrorKind kind) => kind switch
    {
        ErrorKind.NotFound => ErrorCategory.ObjectNotFound,
        ErrorKind.InvalidArgument => ErrorCategory.InvalidArgument,
        ErrorKind.InvalidState => ErrorCategory.InvalidOperation,
        ErrorKind.ConnectionError => ErrorCategory.ConnectionError,
        ErrorKind.OperationTimeout => ErrorCategory.OperationTimeout,
        ErrorKind.OperationStopped => ErrorCategory.OperationStopped,
        ErrorKind.NotImplemented => ErrorCategory.NotImplemented,
        ErrorKind.ResourceUnavailable => ErrorCategory.ResourceUnavailable,
        ErrorKind.ProtocolError => ErrorCategory.ProtocolError,
        _ => ErrorCategory.NotSpecified,
    };

    protected override void StopProcessing() => _stopping.Cancel();

    public void Dispose()
    {
        _stopping.Dispose();
        GC.SuppressFinalize(this);
    }

    private sealed class PostingProgress<T>(EngineCmdlet cmdlet, Action<T> report) : IProgress<T>
    {
        public void Report(T value) => cmdlet.Post(() => report(value));
    }
}
