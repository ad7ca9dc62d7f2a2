using System.Management.Automation;
using System.Text;
using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Module.Infrastructure;
using DeltaMigrate.Reports;

namespace DeltaMigrate.Module.Commands;

/// <summary>Writes the rounds chart and summary of migrations to an HTML, PNG or SVG file.</summary>
[Cmdlet(VerbsData.Export, "KvmMigrationReport", SupportsShouldProcess = true)]
[OutputType(typeof(FileInfo))]
public sealed class ExportKvmMigrationReportCommand : PSCmdlet
{
    private enum ReportFormat
    {
        Html,
        Png,
        Svg,
    }

    private readonly List<MigrationResult> _results = [];
    private ReportFormat _format;
    private string _path = "";

    /// <summary>What Move-KvmVM -PassThru output (also read back with Import-Clixml or Receive-Job); several make one report.</summary>
    [Parameter(Mandatory = true, ValueFromPipeline = true)]
    [ValidateNotNull]
    [DeserializedResult]
    public MigrationResult? InputObject { get; set; }

    /// <summary>The file to write; its extension (.html, .htm, .png, .svg) chooses the format.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>Overwrite the file if it exists.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Output the file written.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void BeginProcessing()
    {
        // Checked before any input arrives, so a bad -Path stops the pipeline before a migration starts.
        _path = GetUnresolvedProviderPathFromPSPath(Path);
        var extension = System.IO.Path.GetExtension(_path).ToLowerInvariant();
        _format = extension switch
        {
            ".html" or ".htm" => ReportFormat.Html,
            ".png" => ReportFormat.Png,
            ".svg" => ReportFormat.Svg,
            _ => throw Terminate("UnsupportedReportFormat", ErrorCategory.InvalidArgument,
                $"-Path '{Path}': the report format comes from the extension, and '{extension}' is not one of .html, .htm, .png or .svg."),
        };

        if (!Force && File.Exists(_path))
        {
            throw Terminate("ReportFileExists", ErrorCategory.ResourceExists,
                $"'{_path}' already exists. Use -Force to overwrite it, or choose another -Path.");
        }
    }

    protected override void ProcessRecord()
    {
        if (InputObject is not null)
        {
            _results.Add(InputObject);
        }
    }

    protected override void EndProcessing()
    {
        if (_results.Count == 0)
        {
            return;
        }

        var what = _results.Count == 1 ? $"migration of {_results[0].VMName}" : $"{_results.Count} migrations";
        if (!ShouldProcess(_path, $"Write {_format} report of the {what}"))
        {
            return;
        }

        byte[] content;
        try
        {
            content = Render();
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or BadImageFormatException)
        {
            WriteError(new ErrorRecord(
                new InvalidOperationException($"Could not draw the chart: SkiaSharp's native library (libSkiaSharp.so) did not load. {e.Message}", e),
                "ReportRenderFailed", ErrorCategory.ResourceUnavailable, _path));
            return;
        }

        try
        {
            // CreateNew without -Force: a file that appeared while the migration ran is not overwritten.
            using (var file = new FileStream(_path, Force ? FileMode.Create : FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                file.Write(content);
            }

            if (PassThru)
            {
                // Through the provider, so the FileInfo carries PSPath and formats like Get-Item's.
                WriteObject(InvokeProvider.Item.Get([_path], force: false, literalPath: true), enumerateCollection: true);
            }
        }
        catch (IOException e) when (!Force && File.Exists(_path))
        {
            WriteError(new ErrorRecord(e, "ReportFileExists", ErrorCategory.ResourceExists, _path));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            WriteError(new ErrorRecord(e, "ReportWriteFailed", ErrorCategory.WriteError, _path));
        }
    }

    private byte[] Render()
    {
        // One result: its rounds chart. Several: one HTML page with them all, or a chart comparing them.
        var single = _results.Count == 1 ? _results[0] : null;
        return _format switch
        {
            ReportFormat.Html => Encoding.UTF8.GetBytes(MigrationReport.RenderHtml(_results)),
            ReportFormat.Png => single is null ? MigrationReport.RenderComparisonPng(_results) : MigrationReport.RenderRoundsPng(single),
            _ => Encoding.UTF8.GetBytes(single is null ? MigrationReport.RenderComparisonSvg(_results) : MigrationReport.RenderRoundsSvg(single)),
        };
    }

    private PipelineStoppedException Terminate(string id, ErrorCategory category, string message)
    {
        ThrowTerminatingError(new ErrorRecord(new ArgumentException(message), id, category, Path));
        return new PipelineStoppedException(); // not reached: ThrowTerminatingError throws
    }
}
