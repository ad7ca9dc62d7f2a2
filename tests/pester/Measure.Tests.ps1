# Measure-KvmVM: sampling a running test guest and predicting per mode.
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    Import-Module $ModuleUnderTest -Force
    $script:RunDir = Initialize-TestRunDirectory
}

AfterAll {
    Remove-TestRunDirectory $RunDir
}

Describe 'Measure-KvmVM' {
    BeforeAll {
        # rate=2000 pages/s picked at random in an 8 MiB (2,048-page) hot set, 16 bytes each.
        $script:Source = Start-TestSource -Name m-src
        $script:Predictions = @(Measure-KvmVM m-src -Duration 1)
    }

    It 'outputs one prediction per mode' {
        $Predictions.Count | Should -Be 4
        $Predictions.Mode | Should -Be @('None', 'Native', 'Lz4', 'Delta')
        $Predictions | ForEach-Object { $_.PSObject.TypeNames[0] | Should -Be 'DeltaMigrate.Engine.Planning.MigrationPrediction' }
        $Predictions.VMName | Sort-Object -Unique | Should -Be 'm-src'
        $Predictions.Bandwidth | Sort-Object -Unique | Should -Be 125000000
    }

    It 'measures a dirty rate near the guest''s' {
        $p = $Predictions[0]
        # Distinct pages are fewer than picks (random picks repeat), and a snapshot stalls the guest briefly.
        $p.DirtyPagesPerSecond | Should -BeGreaterThan 300
        $p.DirtyPagesPerSecond | Should -BeLessThan 20000
        $p.HotSetBytes | Should -BeGreaterThan 0
        $p.HotSetBytes | Should -BeLessOrEqual 9MB -Because 'the guest dirties only its 8 MiB hot set'
        $p.MeanDeltaBytes | Should -BeLessThan 200 -Because '16 changed bytes per page encode small'
        $p.ZeroPageFraction | Should -BeGreaterThan 0.5 -Because '32 MiB of 128 MiB are filled'
        $p.QemuDirtyPagesPerSecond | Should -Not -BeNullOrEmpty
    }

    It 'predicts no more wire bytes for Delta than for None, and converges at 1 Gbit/s' {
        $none = $Predictions | Where-Object Mode -EQ None
        $delta = $Predictions | Where-Object Mode -EQ Delta
        $delta.WireBytes | Should -BeLessOrEqual $none.WireBytes
        $delta.Converges | Should -BeTrue
        $delta.SuggestedCacheSize | Should -BeGreaterOrEqual $delta.HotSetBytes
        $none.SuggestedCacheSize | Should -BeNullOrEmpty
    }

    It 'takes a VM from the pipeline, one mode, and a slow link' {
        $p = Get-KvmVM m-src | Measure-KvmVM -Duration 1 -Mode Delta -Bandwidth 12MB -MaxDowntime 0.1
        $p.Mode | Should -Be 'Delta'
        $p.Bandwidth | Should -Be 12MB
        $p.MaxDowntime | Should -Be ([TimeSpan]::FromMilliseconds(100))
        $p.TotalTime.TotalSeconds | Should -BeGreaterThan 1 -Because 'the first pass alone is 32 MiB at 12 MB/s'
    }

    It 'predicts with the cache size and timeout the migration would use' {
        $p = Measure-KvmVM m-src -Duration 1 -Mode Native, Delta -CacheSize 96MB -Timeout 30
        $p.CacheSize | Should -Be @(96MB, 96MB)
        $slow = Measure-KvmVM m-src -Duration 1 -Mode None -Bandwidth 1MB -Timeout 5
        $slow.Converges | Should -BeFalse -Because '32 MiB of data at 1 MB/s cannot finish in 5 s'
        { Measure-KvmVM m-src -Timeout 0 -ErrorAction Stop } |
            Should -Throw -ErrorId 'InvalidTimeout,DeltaMigrate.Module.Commands.MeasureKvmVMCommand'
    }

    It 'formats as a table with the prediction columns' {
        $text = $Predictions | Format-Table | Out-String
        $text | Should -Match 'Converges'
        $text | Should -Match 'Downtime\(ms\)'
        $text | Should -Match 'Cache\(MiB\)'
    }

    It 'leaves no snapshots behind' {
        Get-ChildItem ([IO.Path]::GetTempPath()) -Filter 'deltamigrate-measure-*' -Directory -ErrorAction Ignore |
            Where-Object LastWriteTime -GT (Get-Date).AddMinutes(-5) | Should -BeNullOrEmpty
    }

    It 'names an unknown VM' {
        { Measure-KvmVM -Name no-such-vm -Duration 1 -ErrorAction Stop } |
            Should -Throw -ErrorId 'VMNotFound,DeltaMigrate.Module.Commands.MeasureKvmVMCommand'
    }

    It 'refuses a duration out of range' {
        { Measure-KvmVM m-src -Duration 0 -ErrorAction Stop } |
            Should -Throw -ErrorId 'InvalidDuration,DeltaMigrate.Module.Commands.MeasureKvmVMCommand'
    }
}
