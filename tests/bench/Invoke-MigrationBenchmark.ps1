<#
.SYNOPSIS
    End-to-end migration benchmark over a tc-shaped link (issue #3): None, Native (QEMU XBZRLE),
    Delta and Lz4 on the same dirtying guest, one migration per cell.

.DESCRIPTION
    Creates a network namespace, lowers its loopback MTU to 1500 and shapes it with a tbf qdisc
    (100 Mbit/s burst 256kb, or 1 Gbit/s burst 1mb), then runs every cell with
    Invoke-BenchmarkCell.ps1 inside it (ip netns exec), so both QEMUs, QEMU's TCP and the
    tunnel's TCP on 127.0.0.1 cross the shaped loopback. The namespace is removed at the end.
    Without root (or with -Unshaped) it runs the cells unshaped and says so in the output.

    Writes tests/bench/results/<name>.json (small: one object per run) and <name>.md (the table),
    and prints the table. Every cell runs -Repeat times (default 3; 1 with -Quick); the summary
    table gives the median and the min-max spread over the repetitions, plus the CPU seconds of
    the source QEMU, the destination QEMU and the engine (the pwsh process running Move-KvmVM).

    -Quick runs a reduced grid (256 MiB VM, ws=128, hot 32 MiB at 20,000 pages/s; row q1 over
    100 Mbit/s with scattered words and with dense random rewrites, row q2 over 1 Gbit/s with
    20 ms RTT if the kernel has sch_netem, and an idle guest once) in about 8 minutes, and also writes docs/benchmarks.md
    with the summary table and PNG charts under docs/img/ rendered with
    DeltaMigrate.Reports.MigrationReport: one rounds chart per run (rendered inside the cell
    process from the live MigrationResult) and one comparison chart per row and workload
    (from MigrationResults the cells serialized with System.Text.Json and deserialized here).

.EXAMPLE
    # The whole grid, 3 runs per cell (about an hour on 2 cores; -Repeat 1: ~21 min), as root, from the repo root:
    dotnet pwsh -NoProfile -File tests/bench/Invoke-MigrationBenchmark.ps1

.EXAMPLE
    # The reduced grid (about 8 min on 2 cores, as root), writes docs/benchmarks.md and docs/img/*.png:
    dotnet pwsh -NoProfile -File tests/bench/Invoke-MigrationBenchmark.ps1 -Quick

.EXAMPLE
    # One cell to check the harness:
    dotnet pwsh -NoProfile -File tests/bench/Invoke-MigrationBenchmark.ps1 -Cell 'a/Delta' -Name smoke
#>
[CmdletBinding()]
param(
    # Cell ids to run (wildcards), e.g. 'a/Delta', 'a/*', '*/None'. Default: all.
    [string[]] $Cell = @('*'),
    # The module to import; default: a private snapshot copied from the repo at start.
    [string] $ModulePath,
    [string] $Guest = (Join-Path $PSScriptRoot '../guest/out/guest.elf'),
    [string] $Name = "issue3-$([DateTime]::UtcNow.ToString('yyyyMMdd-HHmm'))",
    [string] $OutDirectory = (Join-Path $PSScriptRoot 'results'),
    [string] $Namespace = 'dmbench',
    [switch] $Unshaped,
    # The reduced grid of issue 4 (see the description); also writes -Markdown and charts.
    [switch] $Quick,
    # Runs per cell (default 3; 1 with -Quick).
    [ValidateRange(1, 20)] [int] $Repeat,
    # Where to write the benchmark page (default with -Quick: docs/benchmarks.md; otherwise none).
    [string] $Markdown,
    # Where the charts go (PNG); the page links them relatively.
    [string] $ImageDirectory,
    # Re-render the table (and re-save the trimmed JSON) from an earlier run's JSON; runs nothing.
    [string] $RenderFrom
)

$ErrorActionPreference = 'Stop'
$benchWatch = [Diagnostics.Stopwatch]::StartNew()
$repo = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
if (-not $Repeat) { $Repeat = if ($Quick) { 1 } else { 3 } }
if (-not $PSBoundParameters.ContainsKey('Name') -and $Quick) { $Name = "quick-$([DateTime]::UtcNow.ToString('yyyyMMdd-HHmm'))" }
if (-not $Markdown -and $Quick) { $Markdown = Join-Path $repo 'docs/benchmarks.md' }
if (-not $ImageDirectory) { $ImageDirectory = if ($Markdown) { Join-Path ([IO.Path]::GetDirectoryName([IO.Path]::GetFullPath($Markdown))) 'img' } else { Join-Path $OutDirectory "$Name-img" } }
$Guest = (Resolve-Path $Guest).Path
$inner = Join-Path $PSScriptRoot 'Invoke-BenchmarkCell.ps1'
$pwshDll = Join-Path $PSHOME 'pwsh.dll'
$dotnet = (Get-Process -Id $PID).Path   # the dotnet host running this pwsh

if (-not $ModulePath -and -not $RenderFrom) {
    # The module may be rebuilt while the grid runs: benchmark a private copy taken now.
    $snap = Join-Path ([IO.Path]::GetTempPath()) "dm-bench-$Name/module-snapshot"
    New-Item -ItemType Directory $snap -Force | Out-Null
    Copy-Item -Recurse -Force "$repo/DeltaMigrate.psd1", "$repo/module", "$repo/en-US" $snap
    $ModulePath = "$snap/DeltaMigrate.psd1"
}

# ---- the workload of issue #3 --------------------------------------------------------------
$rows = [ordered]@{
    a = @{ Hot = 64; Rate = 20000; Link = '100mbit' }
    b = @{ Hot = 128; Rate = 60000; Link = '100mbit' }
    c = @{ Hot = 128; Rate = 60000; Link = '1gbit' }
}
$shape = @{ '100mbit' = 'rate 100mbit burst 256kb latency 50ms'; '1gbit' = 'rate 1gbit burst 1mb latency 50ms' }
# Links with a delay: netem on the root, tbf under it. On the loopback every packet crosses lo once
# per direction, so 10 ms each way is 20 ms RTT.
$delay = @{ '1gbit+20ms' = @{ Tbf = '1gbit'; Netem = 'delay 10ms' } }
$shape['1gbit+20ms'] = $shape['1gbit']

$grid = if ($Quick) {
    # The reduced grid (issue 4): 256 MiB VM, 128 MiB working set, hot 32 MiB at 20,000 pages/s.
    $quickModes = @(
        @{ Mode = 'None'; Label = 'None' }
        @{ Mode = 'Native'; Label = 'Native 128 MiB'; CacheSize = 128MB }   # as large as Delta's default (half the VM)
        @{ Mode = 'Lz4'; Label = 'Lz4' }
        @{ Mode = 'Delta'; Label = 'Delta (default)' }
    )
    $quickRows = @(
        @{ Row = 'q1'; Link = '100mbit'; Workload = 'scatter'; Append = 'ws=128 hot=32 rate=20000 bytes=16 pattern=scatter fill=random'; Rate = 20000; Modes = $quickModes }
        @{ Row = 'q1'; Link = '100mbit'; Workload = 'random'; Append = 'ws=128 hot=32 rate=20000 pattern=random fill=random'; Rate = 20000; Modes = $quickModes }
        @{ Row = 'q2'; Link = '1gbit+20ms'; Workload = 'scatter'; Append = 'ws=128 hot=32 rate=20000 bytes=16 pattern=scatter fill=random'; Rate = 20000; Modes = $quickModes }
        # Idle once (a fast link keeps it short): what each mode costs when nothing is dirtied.
        @{ Row = 'idle'; Link = '1gbit+20ms'; Workload = 'idle'; Append = 'ws=128 hot=32 rate=0 fill=random'; Rate = 0; Modes = $quickModes }
    )
    foreach ($q in $quickRows) {
        foreach ($m in $q.Modes) {
            $id = if ($m.CacheSize) { "$($m.Mode)$($m.CacheSize / 1MB)" } else { $m.Mode }
            [pscustomobject]@{
                Id = "$($q.Row)/$($q.Workload)/$id"; Row = $q.Row; Workload = $q.Workload; Label = $m.Label; Mode = $m.Mode; Link = $q.Link
                Append = $q.Append; CacheSize = [long]$m.CacheSize; Timeout = 60; TimeoutAction = 'Cancel'; RequestedRate = $q.Rate
                Memory = 256MB; WarmupHeartbeats = 10
            }
        }
    }
}
else { foreach ($row in $rows.Keys) {
    $r = $rows[$row]
    foreach ($fill in 'random', 'text') {
        $append = "ws=256 hot=$($r.Hot) rate=$($r.Rate) bytes=16 pattern=scatter fill=$fill"
        $modes = if ($fill -eq 'random') {
            @(
                @{ Mode = 'None'; Label = 'None' }
                @{ Mode = 'Native'; Label = 'Native 64 MiB'; CacheSize = 64MB }
                @{ Mode = 'Native'; Label = 'Native 256 MiB'; CacheSize = 256MB }
                @{ Mode = 'Delta'; Label = 'Delta (default)' }
                @{ Mode = 'Lz4'; Label = 'Lz4' }
            ) + $(if ($row -eq 'a') { @{ Mode = 'None'; Label = 'None, pause at 30 s'; Timeout = 30; TimeoutAction = 'Pause'; Id = 'None-Pause30' } })
        }
        elseif ($row -eq 'a') {
            @(
                @{ Mode = 'Native'; Label = 'Native 256 MiB, text'; CacheSize = 256MB; Id = 'Native256-text' }
                @{ Mode = 'Delta'; Label = 'Delta (default), text'; Id = 'Delta-text' }
            )
        }
        foreach ($m in $modes) {
            $id = if ($m.Id) { $m.Id } elseif ($m.CacheSize) { "$($m.Mode)$($m.CacheSize / 1MB)" } else { $m.Mode }
            [pscustomobject]@{
                Id = "$row/$id"; Row = $row; Label = $m.Label; Mode = $m.Mode; Link = $r.Link; Append = $append
                CacheSize = [long]$m.CacheSize; Timeout = $(if ($m.Timeout) { $m.Timeout } else { 120 })
                TimeoutAction = $(if ($m.TimeoutAction) { $m.TimeoutAction } else { 'Cancel' })
                RequestedRate = $r.Rate; Workload = $(if ($fill -eq 'text') { 'scatter, text' } else { 'scatter' })
                Memory = 512MB; WarmupHeartbeats = 20
            }
        }
    }
} }
$Cell = @($Cell | ForEach-Object { $_ -split ',' } | ForEach-Object Trim)   # -File passes 'a,b' as one string
$selected = @($grid | Where-Object { $id = $_.Id; @($Cell | Where-Object { $id -like $_ }).Count -gt 0 })
if (-not $selected) { throw "No cell matches $($Cell -join ', '). Cells: $($grid.Id -join ', ')" }

# ---- shaping ---------------------------------------------------------------------------------
$isRoot = (& id -u) -eq '0'
$shaped = $isRoot -and -not $Unshaped
if (-not $shaped) {
    Write-Warning ($(if (-not $isRoot) { 'Not root: ' } else { '-Unshaped: ' }) +
        'running UNSHAPED on the host loopback. Downtime and total time then say little (QEMU ignores its bandwidth limit in the final copy, and loopback is fast).')
}

function Invoke-Native([string] $File, [string[]] $Arguments, [switch] $IgnoreError) {
    & $File @Arguments 2>&1 | ForEach-Object { Write-Verbose "$File $($Arguments -join ' '): $_" }
    if ($LASTEXITCODE -ne 0 -and -not $IgnoreError) { throw "$File $($Arguments -join ' ') failed ($LASTEXITCODE)" }
}

$script:netemMissing = $false
function Set-Link([string] $Link) {
    $tc = @('netns', 'exec', $Namespace, 'tc', 'qdisc')
    Invoke-Native ip ($tc + @('del', 'dev', 'lo', 'root')) -IgnoreError
    if ($delay[$Link] -and -not $script:netemMissing) {
        & ip @($tc + @('add', 'dev', 'lo', 'root', 'handle', '1:', 'netem') + ($delay[$Link].Netem -split ' ')) 2>&1 | ForEach-Object { Write-Verbose "netem: $_" }
        if ($LASTEXITCODE -eq 0) {
            Invoke-Native ip ($tc + @('add', 'dev', 'lo', 'parent', '1:', 'handle', '2:', 'tbf') + ($shape[$Link] -split ' '))
            return
        }
        # e.g. a kernel without sch_netem ("Specified qdisc kind is unknown"): the rate only.
        $script:netemMissing = $true
        Write-Warning "tc netem is not available on this kernel: link '$Link' runs WITHOUT its delay (rate only)."
    }
    Invoke-Native ip ($tc + @('add', 'dev', 'lo', 'root', 'tbf') + ($shape[$Link] -split ' '))
}

function Save-Results($Cells, [bool] $Shaped) {
    # Small enough to commit: per cell only the first and last four rounds (RoundsRecorded has the count).
    $trimmed = foreach ($c in $Cells) {
        $copy = [ordered]@{}
        foreach ($p in $c.PSObject.Properties) { $copy[$p.Name] = $p.Value }
        $r = @($c.Rounds)
        if ($r.Count -gt 8) { $copy.Rounds = @($r[0..3]) + @($r[-4..-1]); $copy.RoundsTrimmed = $true }
        [pscustomobject]$copy
    }
    [ordered]@{
        Name = $Name; Shaped = $Shaped; Host = [Environment]::MachineName; Cpus = [Environment]::ProcessorCount
        Qemu = ((& qemu-system-x86_64 --version) | Select-Object -First 1); Module = $ModulePath
        Repetitions = $Repeat; Quick = [bool]$Quick; NetemMissing = $script:netemMissing
        WallSeconds = $(if ($RenderFrom) { $renderedWall } else { [math]::Round($benchWatch.Elapsed.TotalSeconds) }); Cells = @($trimmed)
    } | ConvertTo-Json -Depth 6 | Set-Content (Join-Path $OutDirectory "$Name.json")
}

New-Item -ItemType Directory $OutDirectory -Force | Out-Null
if ($RenderFrom) {
    $loaded = Get-Content -Raw $RenderFrom | ConvertFrom-Json
    if ($loaded.Repetitions) { $Repeat = $loaded.Repetitions }
    if ($loaded.Quick) { $Quick = [switch]$true }
    $script:netemMissing = [bool]$loaded.NetemMissing
    $renderedWall = $loaded.WallSeconds
    $results = [Collections.Generic.List[object]]::new()
    foreach ($c in $loaded.Cells) { $results.Add($c) }
    if (-not $PSBoundParameters.ContainsKey('Name')) { $Name = $loaded.Name }
    Save-Results $results $loaded.Shaped
}
else {
    $work = Join-Path ([IO.Path]::GetTempPath()) "dm-bench-$Name"
    New-Item -ItemType Directory $work -Force | Out-Null

    $results = [Collections.Generic.List[object]]::new()
    try {
        if ($shaped) {
            if (@(& ip netns list | Where-Object { ($_ -split ' ')[0] -eq $Namespace }).Count) {
                $shaped = $false   # not ours: leave it alone in finally
                throw "Network namespace '$Namespace' exists already (another benchmark running?). Remove it with 'ip netns del $Namespace' or pass -Namespace."
            }
            Invoke-Native ip @('netns', 'add', $Namespace)
            Invoke-Native ip @('netns', 'exec', $Namespace, 'ip', 'link', 'set', 'lo', 'mtu', '1500', 'up')
        }
        $i = 0
        $runs = foreach ($c in $selected) { foreach ($rep in 1..$Repeat) { [pscustomobject]@{ Cell = $c; Rep = $rep } } }
        if ($Markdown -or $Quick) { New-Item -ItemType Directory $ImageDirectory -Force | Out-Null }
        foreach ($run in $runs) {
            $c = $run.Cell
            $i++
            if ($shaped) { Set-Link $c.Link }
            $qdisc = if ($shaped) { (& ip netns exec $Namespace tc qdisc show dev lo) -join ' ' } else { 'unshaped' }
            $slug = ($c.Id -replace '[/ ]', '-') + $(if ($Repeat -gt 1) { "-r$($run.Rep)" })
            $out = Join-Path $work ("{0:d2}-{1}.json" -f $i, $slug)
            $stj = Join-Path $work "$slug.result.json"
            $cellArgs = @('-NoProfile', '-NonInteractive', '-File', $inner, '-ModulePath', $ModulePath, '-Guest', $Guest,
                '-Append', $c.Append, '-Compress', $c.Mode, '-OutFile', $out, '-Timeout', $c.Timeout, '-TimeoutAction', $c.TimeoutAction,
                '-Memory', $c.Memory, '-WarmupHeartbeats', $c.WarmupHeartbeats, '-ResultJson', $stj,
                '-VmName', (($c.Id -split '/' | Select-Object -SkipLast 1) -join '-'))
            if ($Markdown -or $Quick) { $cellArgs += @('-RoundsPng', (Join-Path $ImageDirectory "$Name-$slug-rounds.png")) }
            if ($c.CacheSize) { $cellArgs += @('-CacheSize', $c.CacheSize) }
            $cmd = if ($shaped) { @('ip', 'netns', 'exec', $Namespace, $dotnet, $pwshDll) } else { @($dotnet, $pwshDll) }
            Write-Host ("[{0:HH:mm:ss}] {1}/{2} {3} (run {6}/{7}): {4} over {5}" -f [DateTime]::Now, $i, $runs.Count, $c.Id, $c.Label, $(if ($shaped) { $c.Link } else { 'unshaped loopback' }), $run.Rep, $Repeat)
            $watch = [Diagnostics.Stopwatch]::StartNew()
            & $cmd[0] @($cmd[1..($cmd.Count - 1)] + $cellArgs) 2>&1 | ForEach-Object { Write-Host "    $_" }
            $data = if (Test-Path $out) { Get-Content -Raw $out | ConvertFrom-Json } else { [pscustomobject]@{ HarnessError = "no result file (exit $LASTEXITCODE)" } }
            $entry = [ordered]@{ Id = $c.Id; Rep = $run.Rep; Row = $c.Row; Workload = $c.Workload; Label = $c.Label; MemoryMiB = $c.Memory / 1MB; ResultJsonPath = $(if (Test-Path $stj) { $stj }); Link = $(if (-not $shaped) { 'unshaped' } elseif ($script:netemMissing -and $delay[$c.Link]) { "$($delay[$c.Link].Tbf) (no delay: no netem)" } else { $c.Link }); Qdisc = $qdisc; RequestedRate = $c.RequestedRate; WallSeconds = [math]::Round($watch.Elapsed.TotalSeconds) }
            foreach ($p in $data.PSObject.Properties) { $entry[$p.Name] = $p.Value }
            $results.Add([pscustomobject]$entry)
            $e = $results[-1]
            Write-Host ("    -> {0} converged={1} total={2}s downtime={3}ms wire={4}MiB stream={5}MiB syncs={6} guest rate {7}/{8} p/s cpu src/dst/engine {10}/{11}/{12} s {9}" -f
                $e.Status, $e.Converged, $e.TotalSeconds, $e.DowntimeMs, $e.WireMiB, $e.StreamMiB, $e.DirtySyncCount, $e.GuestRateBefore, $e.GuestRateDuring, "$($e.ErrorId)$($e.HarnessError)$($e.ChartError)",
                $e.CpuSrcSeconds, $e.CpuDstSeconds, $e.CpuEngineSeconds)
            # Save as we go: a long grid that dies halfway still leaves its rows.
            Save-Results $results $shaped
        }
    }
    finally {
        if ($shaped) { Invoke-Native ip @('netns', 'del', $Namespace) -IgnoreError }
    }
}

# ---- the table -------------------------------------------------------------------------------
function Format-Cell($e) {
    $status = if ($e.HarnessError) { "harness error: $($e.HarnessError -replace '\s+', ' ')" }
    elseif ($e.Status -eq 'Completed' -and $e.TimedOut) { 'paused at timeout' }
    elseif ($e.Status -eq 'Completed') { 'converged' }
    elseif ($e.ErrorId -like 'MigrationTimedOut*') { 'never converges (cancelled at timeout)' }
    else { "$($e.Status) $($e.ErrorId -replace ',.*$', '')" }
    # Native: QEMU's xbzrle-cache 'pages' (pages sent as XBZRLE) lands in CacheHits, and the module's
    # XbzrlePages for Native is bytes / encoding-rate, which is not a page count; show QEMU's pages, marked †.
    $xb = if (-not $e.Compression) { '-' }
    elseif ($e.Compress -eq 'Native') { '{0:N0}† / -' -f $e.Compression.CacheHits }
    else { '{0:N0} / {1:N0}' -f $e.Compression.XbzrlePages, $e.Compression.CacheHits }
    $down = if ($e.Status -eq 'Completed' -and $null -ne $e.DowntimeMs) { '{0:N0}' -f $e.DowntimeMs } else { '-' }
    $rate = if ($null -ne $e.GuestRateBefore) { '{0:N0} / {1:N0}' -f $e.GuestRateBefore, $e.GuestRateDuring } else { '-' }
    # TotalTime as the module reports it; when it is 0 (seen with Delta), our own clock around Move-KvmVM, marked *.
    $total = if ($e.TotalSeconds -gt 0) { '{0:N1}' -f $e.TotalSeconds } elseif ($e.MoveSeconds) { '{0:N1}*' -f $e.MoveSeconds } else { '-' }
    $rowLabel = "$($e.Row) $($e.Link)" + $(if (@($e.Id -split '/').Count -gt 2) { ", $($e.Workload)" }) + $(if ($e.Rep -gt 1) { " (run $($e.Rep))" })
    '| {0}{1} | {2} | {3} | {4} | {5} | {6} | {7} | {8} | {9} | {10} ({11:N0}) |' -f $rowLabel, '', $e.Label, $status,
        $total, $down, $e.WireMiB, $e.StreamMiB, $e.DirtySyncCount, $xb, $rate, $e.RequestedRate
}
$table = @(
    '| row, link | mode | result | total s | downtime ms | wire MiB | stream MiB | rounds (dirty syncs) | XBZRLE pages / cache hits | guest pages/s before / during (asked) |'
    '|---|---|---|---|---|---|---|---|---|---|'
    $results | ForEach-Object { Format-Cell $_ }
)
$table | Set-Content (Join-Path $OutDirectory "$Name.md")
$table -join "`n"

# ---- the summary over repetitions, the charts and the page (docs/benchmarks.md) --------------
function Get-Median([object[]] $Values) {
    $v = @($Values | Where-Object { $null -ne $_ } | ForEach-Object { [double]$_ } | Sort-Object)
    if ($v.Count -eq 0) { return $null }
    if ($v.Count % 2) { $v[($v.Count - 1) / 2] } else { ($v[$v.Count / 2 - 1] + $v[$v.Count / 2]) / 2 }
}
function Format-Spread([object[]] $Values, [string] $Format = 'N1') {
    # "median (min-max)" over the runs; only the value when there is one run.
    $v = @($Values | Where-Object { $null -ne $_ } | ForEach-Object { [double]$_ })
    if ($v.Count -eq 0) { return '-' }
    $m = (Get-Median $v).ToString($Format, [Globalization.CultureInfo]::InvariantCulture)
    if ($v.Count -eq 1) { return $m }
    $s = $v | Measure-Object -Minimum -Maximum
    '{0} ({1}-{2})' -f $m, $s.Minimum.ToString($Format, [Globalization.CultureInfo]::InvariantCulture), $s.Maximum.ToString($Format, [Globalization.CultureInfo]::InvariantCulture)
}
function Get-RunTotal($e) { if ($e.TotalSeconds -gt 0) { [double]$e.TotalSeconds } elseif ($e.MoveSeconds) { [double]$e.MoveSeconds } else { $null } }
function Get-RunResult($e) {
    if ($e.HarnessError) { 'harness error' }
    elseif ($e.Status -eq 'Completed' -and $e.TimedOut) { 'paused at timeout' }
    elseif ($e.Status -eq 'Completed') { 'converged' }
    elseif ($e.ErrorId -like 'MigrationTimedOut*') { 'cancelled at timeout' }
    else { "$($e.Status) $($e.ErrorId -replace ',.*$', '')".Trim() }
}

# Group-Object sorts by name: keep the grid's order instead.
$order = @{}
foreach ($e in $results) { foreach ($k in $e.Id, "$($e.Row)/$($e.Workload)") { if (-not $order.ContainsKey($k)) { $order[$k] = $order.Count } } }
$groups = @($results | Group-Object Id | Sort-Object { $order[$_.Name] } | ForEach-Object {
        $runs = @($_.Group)
        $e = $runs[0]
        $done = @($runs | Where-Object { $_.Status -eq 'Completed' -and -not $_.TimedOut })
        $outcomes = @($runs | ForEach-Object { Get-RunResult $_ } | Group-Object | ForEach-Object { if ($runs.Count -gt 1) { "$($_.Count)x $($_.Name)" } else { $_.Name } })
        [pscustomobject]@{
            Id = $_.Name; Row = $e.Row; Workload = $e.Workload; Link = $e.Link; Label = $e.Label; Mode = $e.Compress; Runs = $runs
            Converged = $done.Count; N = $runs.Count; Outcome = $outcomes -join ', '
            Total = @($runs | ForEach-Object { Get-RunTotal $_ }); Downtime = @($done | ForEach-Object DowntimeMs)
            Wire = @($runs | ForEach-Object WireMiB); Rounds = @($runs | ForEach-Object DirtySyncCount)
            CpuSrc = @($runs | ForEach-Object CpuSrcSeconds); CpuDst = @($runs | ForEach-Object CpuDstSeconds); CpuEngine = @($runs | ForEach-Object CpuEngineSeconds)
            RateDuring = @($runs | ForEach-Object GuestRateDuring)
        }
    })
$summary = @(
    "| row, link | workload | mode | result | converged | total s | downtime ms | wire MiB | rounds | CPU s src / dst / engine | guest pages/s during |"
    '|---|---|---|---|---|---|---|---|---|---|---|'
    foreach ($g in $groups) {
        '| {0} {1} | {2} | {3} | {4} | {5}/{6} | {7} | {8} | {9} | {10} | {11} / {12} / {13} | {14} |' -f $g.Row, $g.Link, $g.Workload, $g.Label, $g.Outcome,
            $g.Converged, $g.N, (Format-Spread $g.Total), (Format-Spread $g.Downtime 'N0'), (Format-Spread $g.Wire), (Format-Spread $g.Rounds 'N0'),
            (Format-Spread $g.CpuSrc), (Format-Spread $g.CpuDst), (Format-Spread $g.CpuEngine), (Format-Spread $g.RateDuring 'N0')
    }
)
$summary | Set-Content (Join-Path $OutDirectory "$Name-summary.md")
"`n" + ($summary -join "`n")

if ($Markdown) {
    New-Item -ItemType Directory $ImageDirectory -Force | Out-Null
    $mdDir = [IO.Path]::GetDirectoryName([IO.Path]::GetFullPath($Markdown))
    $rel = { param($path) [IO.Path]::GetRelativePath($mdDir, $path) -replace '\\', '/' }

    # One comparison chart per row and workload, from real MigrationResult objects: each cell
    # serialized its result with System.Text.Json; deserializing gives MigrationResult again.
    $charts = [ordered]@{}
    $chartNotes = [Collections.Generic.List[string]]::new()
    try {
        if (-not $ModulePath) { $ModulePath = Join-Path $repo 'DeltaMigrate.psd1' }
        Import-Module $ModulePath -ErrorAction Stop
        $resultType = [DeltaMigrate.Engine.Migration.MigrationResult]
        if (-not ('DeltaMigrate.Reports.MigrationReport' -as [type])) {
            Add-Type -Path (Join-Path ([IO.Path]::GetDirectoryName($resultType.Assembly.Location)) 'DeltaMigrate.Reports.dll')
        }
        foreach ($pair in @($groups | Group-Object { "$($_.Row)/$($_.Workload)" } | Sort-Object { $order[$_.Name] })) {
            $list = [Collections.Generic.List[DeltaMigrate.Engine.Migration.MigrationResult]]::new()
            foreach ($g in $pair.Group) {
                $first = $g.Runs | Where-Object { $_.ResultJsonPath -and (Test-Path $_.ResultJsonPath) } | Select-Object -First 1
                if ($first) { $list.Add([Text.Json.JsonSerializer]::Deserialize((Get-Content -Raw $first.ResultJsonPath), $resultType)) }
            }
            if ($list.Count -lt 2) { $chartNotes.Add("$($pair.Name): fewer than two results on disk, no comparison chart."); continue }
            $png = Join-Path $ImageDirectory ("$Name-" + ($pair.Name -replace '[/ ,]+', '-') + '-comparison.png')
            [IO.File]::WriteAllBytes($png, [DeltaMigrate.Reports.MigrationReport]::RenderComparisonPng($list, 900, 450))
            $charts[$pair.Name] = $png
        }
    }
    catch { $chartNotes.Add("Comparison charts failed: $($_.Exception.Message)") }

    $cpuModel = ((Get-Content /proc/cpuinfo -ErrorAction Ignore | Where-Object { $_ -like 'model name*' } | Select-Object -First 1) -replace '^model name\s*:\s*', '')
    $memGiB = [math]::Round(((Get-Content /proc/meminfo -ErrorAction Ignore | Select-Object -First 1) -replace '\D', '') / 1MB, 1)
    $wall = if ($RenderFrom) { $renderedWall } else { [math]::Round($benchWatch.Elapsed.TotalSeconds) }
    $isShaped = if ($RenderFrom) { [bool]$loaded.Shaped } else { $shaped }
    $cmdLine = 'dotnet pwsh -NoProfile -File tests/bench/Invoke-MigrationBenchmark.ps1' + $(if ($Quick) { ' -Quick' }) + $(if ($PSBoundParameters.ContainsKey('Repeat')) { " -Repeat $Repeat" })

    # Where Delta loses: against every other mode of the same row and workload, each median in which
    # Delta is worse by more than 10 %, from the numbers above.
    $losses = foreach ($pair in @($groups | Group-Object { "$($_.Row)/$($_.Workload)" } | Sort-Object { $order[$_.Name] })) {
        $d = $pair.Group | Where-Object Mode -EQ 'Delta' | Select-Object -First 1
        if (-not $d) { continue }
        foreach ($o in @($pair.Group | Where-Object Mode -NE 'Delta')) {
            $items = foreach ($metric in @(
                    # Min: the smallest difference worth a line.
                    @{ Name = 'total time'; D = (Get-Median $d.Total); O = (Get-Median $o.Total); Unit = 's'; Both = $true; Min = 0.2 }
                    @{ Name = 'downtime'; D = (Get-Median $d.Downtime); O = (Get-Median $o.Downtime); Unit = 'ms'; Both = $true; Min = 20 }
                    @{ Name = 'wire bytes'; D = (Get-Median $d.Wire); O = (Get-Median $o.Wire); Unit = 'MiB'; Both = $true; Min = 1 }
                    @{ Name = 'engine CPU'; D = (Get-Median $d.CpuEngine); O = (Get-Median $o.CpuEngine); Unit = 's'; Both = $false; Min = 0.2 }
                    @{ Name = 'source QEMU CPU'; D = (Get-Median $d.CpuSrc); O = (Get-Median $o.CpuSrc); Unit = 's'; Both = $false; Min = 0.2 }
                    @{ Name = 'destination QEMU CPU'; D = (Get-Median $d.CpuDst); O = (Get-Median $o.CpuDst); Unit = 's'; Both = $false; Min = 0.2 }
                )) {
                # Time, downtime and bytes compare only when both converged (a cancelled run stops at the timeout).
                if ($metric.Both -and ($d.Converged -lt $d.N -or $o.Converged -lt $o.N)) { continue }
                if ($null -eq $metric.D -or $null -eq $metric.O -or $metric.D -le $metric.O * 1.1 -or $metric.D - $metric.O -lt $metric.Min) { continue }
                $ratio = if ($metric.O -gt 0) { ' ({0:N1}x)' -f ($metric.D / $metric.O) } else { '' }
                '{0} {1:N1} against {2:N1} {3}{4}' -f $metric.Name, $metric.D, $metric.O, $metric.Unit, $ratio
            }
            if ($d.Converged -lt $d.N -and $o.Converged -eq $o.N) { $items = @("does not converge ($($d.Converged)/$($d.N)) where $($o.Label) does") + @($items) }
            if ($items) { "* $($pair.Name) over $($d.Link), against $($o.Label): " + ($items -join '; ') + '.' }
        }
    }

    $md = [Collections.Generic.List[string]]::new()
    $md.Add('# Benchmarks')
    $md.Add('')
    $md.Add("Generated by tests/bench/Invoke-MigrationBenchmark.ps1 ($Name, $([DateTime]::UtcNow.ToString('yyyy-MM-dd')) UTC); rerun it to refresh this page. The full grid of issue 3, with its discussion, is in [performance.md](performance.md#end-to-end-over-a-shaped-link-issue-3).")
    $md.Add('')
    $md.Add('## How it was run')
    $md.Add('')
    $md.Add("    $cmdLine")
    $md.Add('')
    $md.Add("* Machine: $cpuModel, $([Environment]::ProcessorCount) CPUs, $memGiB GiB RAM, Linux $((& uname -r) -join ''); $((& qemu-system-x86_64 --version) | Select-Object -First 1) under TCG, machine pc-i440fx-7.2.")
    $md.Add("* Wall time of the whole run: $([math]::Floor($wall / 60)) min $($wall % 60) s for $($results.Count) migrations ($Repeat run(s) per cell).")
    $md.Add($(if ($isShaped) { '* Shaped: each cell runs in the network namespace `' + $Namespace + '` whose `lo` (MTU 1500) is shaped with tc, so both QEMUs, QEMU''s own TCP (None, Native) and the tunnel''s TCP (Delta, Lz4) cross the link. 100mbit: `tbf ' + $shape['100mbit'] + '`; 1gbit: `tbf ' + $shape['1gbit'] + '`; 1gbit+20ms: `netem delay 10ms` at the root (10 ms each way on the loopback, 20 ms RTT) with that tbf under it.' }
            else { '* **Unshaped**: not run as root (or with -Unshaped), so the cells ran on the host loopback without tc; total time and downtime then say little about a real link.' }))
    if ($isShaped -and $script:netemMissing) { $md.Add('* **No delay was applied**: this kernel has no `sch_netem` (`tc qdisc add ... netem` fails with "Specified qdisc kind is unknown"), so the 1gbit+20ms rows ran at 1 Gbit/s with no added delay; the link column says so.') }
    if ($Quick) { $md.Add('* Workload (-Quick): 256 MiB VM, the test guest (tests/guest) fills 128 MiB (`ws=128`) with random data, then dirties pages of a 32 MiB hot set (`hot=32`) at 20,000 pages/s: **scatter** changes 16 bytes per page (`bytes=16 pattern=scatter`), **random** rewrites the whole page with random bytes (`pattern=random`), **idle** dirties nothing (`rate=0`). Native uses `-CacheSize 128MB` (the size of Delta''s default cache, half the VM); Delta and Lz4 their defaults. Every cell: `-MaxDowntime 0.3 -Timeout 60 -TimeoutAction Cancel`, migration starts after `DMGUEST ready` and 10 heartbeats (1 s).') }
    $md.Add('* CPU seconds: the source and destination QEMU from `/proc/<pid>/stat` (utime + stime) just before and after Move-KvmVM; the engine is the pwsh process running Move-KvmVM (and, for Delta and Lz4, the tunnel''s encoder and decoder; both ends run in that one process here), from Process.TotalProcessorTime. The machine has only ' + [Environment]::ProcessorCount + ' CPUs, shared by both QEMUs, the engine and the guest.')
    $md.Add('* "total s" is the module''s TotalTime (for a cancelled run, time to the cancel); when it came back 0 the benchmark''s own clock around Move-KvmVM. Downtime (QEMU''s STOP on the source to RESUME on the destination) only for converged runs. "rounds" is QEMU''s dirty-sync count. With one run per cell the figure is that run; with more, the median and (min-max).')
    $md.Add("* Raw results: tests/bench/results/$Name.json (per run, first and last four rounds).")
    $md.Add('')
    $md.Add('## Results')
    $md.Add('')
    foreach ($line in $summary) { $md.Add($line) }
    $md.Add('')
    $md.Add('## Where Delta loses')
    $md.Add('')
    $md.Add('Every median in which Delta is more than 10 % worse than another mode of the same row and workload (time, downtime and bytes only when both converged in every run):')
    $md.Add('')
    if ($losses) { foreach ($l in $losses) { $md.Add($l) } } else { $md.Add('* Nowhere in this run.') }
    $md.Add('')
    $md.Add('## Charts')
    $md.Add('')
    $md.Add('Rendered with DeltaMigrate.Reports.MigrationReport (RenderComparisonPng over the first run of each mode, deserialized from the JSON the cells wrote; RenderRoundsPng inside each cell from the live result).')
    foreach ($n in $chartNotes) { $md.Add(''); $md.Add("_$($n)_") }
    foreach ($pair in @($groups | Group-Object { "$($_.Row)/$($_.Workload)" } | Sort-Object { $order[$_.Name] })) {
        $md.Add('')
        $md.Add("### $($pair.Name) over $($pair.Group[0].Link)")
        $md.Add('')
        if ($charts[$pair.Name]) { $md.Add("![$($pair.Name): remaining MiB over time, all modes]($(& $rel $charts[$pair.Name]))"); $md.Add('') }
        $links = foreach ($g in $pair.Group) {
            foreach ($r in $g.Runs) {
                if ($r.RoundsPng -and (Test-Path (Join-Path $ImageDirectory $r.RoundsPng))) {
                    '[{0}{1}]({2})' -f $g.Label, $(if ($g.N -gt 1) { " run $($r.Rep)" }), (& $rel (Join-Path $ImageDirectory $r.RoundsPng))
                }
            }
        }
        if ($links) { $md.Add('Rounds charts: ' + ($links -join ', ') + '.') }
    }
    # Hand-written notes below this marker survive a rerun (they describe a particular run: keep them in step).
    $marker = '<!-- Hand-written notes below this line are kept when the benchmark rewrites this page. -->'
    $kept = if (Test-Path $Markdown) { $old = Get-Content -Raw $Markdown; $at = $old.IndexOf($marker); if ($at -ge 0) { $old.Substring($at + $marker.Length).Trim("`r", "`n") } }
    $md.Add('')
    $md.Add($marker)
    if ($kept) { $md.Add(''); $md.Add($kept) }
    $md | Set-Content $Markdown
    Write-Host "Wrote $Markdown and $($charts.Count) comparison chart(s) in $ImageDirectory"
}
if (-not $RenderFrom) { Write-Host ("Benchmark wall time: {0:N0} s" -f $benchWatch.Elapsed.TotalSeconds) }
