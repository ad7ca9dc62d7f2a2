# Export-KvmMigrationReport: the report of a real migration, as HTML and PNG.
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    Import-Module $ModuleUnderTest -Force
    $script:RunDir = Initialize-TestRunDirectory
    $script:Out = Join-Path $RunDir 'reports'
    New-Item -ItemType Directory $Out | Out-Null

    $null = Start-TestSource -Name report-src
    $null = Start-TestDestination -Name report-dst -Paused
    # Slow enough for a few pre-copy rounds to chart.
    $script:Result = Move-KvmVM report-src -Destination report-dst -PassThru -Bandwidth 20MB -MaxDowntime 0.05
}

AfterAll {
    Remove-TestRunDirectory $RunDir
}

Describe 'Export-KvmMigrationReport' {
    It 'writes an HTML report with the VM and its downtime in ms' {
        $Result.Status | Should -Be 'Completed'
        $path = Join-Path $Out 'report.html'
        $Result | Export-KvmMigrationReport -Path $path

        Test-Path $path | Should -BeTrue
        $html = Get-Content -Raw $path
        $html | Should -Match '^<!DOCTYPE html>'
        $html | Should -BeLike "*$($Result.VMName)*"
        $downtime = $Result.Downtime.TotalMilliseconds.ToString('0', [cultureinfo]::InvariantCulture)
        $html | Should -BeLike "*$downtime ms*"
        $html | Should -BeLike '*data:image/png;base64,*'
    }

    It 'writes a PNG chart and outputs it with -PassThru' {
        $path = Join-Path $Out 'report.png'
        $file = $Result | Export-KvmMigrationReport -Path $path -PassThru

        $file | Should -BeOfType [IO.FileInfo]
        $file.FullName | Should -Be $path
        $bytes = [IO.File]::ReadAllBytes($path)
        $bytes[0..7] | Should -Be @(0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A) -Because 'the file starts with the PNG signature'
        $bytes.Length | Should -BeGreaterThan 5KB
    }

    It 'refuses to overwrite without -Force, and overwrites with it' {
        $path = Join-Path $Out 'exists.html'
        Set-Content $path 'old'
        { $Result | Export-KvmMigrationReport -Path $path -ErrorAction Stop } |
            Should -Throw -ErrorId 'ReportFileExists,DeltaMigrate.Module.Commands.ExportKvmMigrationReportCommand'
        Get-Content $path | Should -Be 'old'

        $Result | Export-KvmMigrationReport -Path $path -Force
        Get-Content -Raw $path | Should -Match '^<!DOCTYPE html>'
    }

    It '-WhatIf writes nothing' {
        $path = Join-Path $Out 'whatif.html'
        $Result | Export-KvmMigrationReport -Path $path -WhatIf
        Test-Path $path | Should -BeFalse
    }

    It 'names an unknown extension UnsupportedReportFormat and writes nothing' {
        $path = Join-Path $Out 'report.pdf'
        { $Result | Export-KvmMigrationReport -Path $path -ErrorAction Stop } |
            Should -Throw -ErrorId 'UnsupportedReportFormat,DeltaMigrate.Module.Commands.ExportKvmMigrationReportCommand'
        Test-Path $path | Should -BeFalse
    }

    It 'puts several results into one HTML file' {
        $path = Join-Path $Out 'two.html'
        $Result, $Result | Export-KvmMigrationReport -Path $path
        $html = Get-Content -Raw $path
        ([regex]::Matches($html, '<section>')).Count | Should -Be 2
    }

    It 'makes the same report from a result read back with Import-Clixml (<_>)' -ForEach 'report.html', 'report.png' {
        $xml = Join-Path $Out 'result.xml'
        $Result | Export-Clixml $xml -Force
        $back = Import-Clixml $xml
        $back.GetType().FullName | Should -Not -Be 'DeltaMigrate.Engine.Migration.MigrationResult' -Because 'Import-Clixml gives a property bag'
        $back.PSObject.TypeNames | Should -Contain 'Deserialized.DeltaMigrate.Engine.Migration.MigrationResult'
        @($Result.Rounds).Count | Should -BeGreaterThan 1 -Because 'a chart of several rounds tells whether the rounds survived'

        $original = Join-Path $Out "original-$_"; $readBack = Join-Path $Out "clixml-$_"
        $Result | Export-KvmMigrationReport -Path $original -Force
        $back | Export-KvmMigrationReport -Path $readBack -Force
        (Get-FileHash $readBack).Hash | Should -Be (Get-FileHash $original).Hash -Because 'every figure the report shows survived the round trip'
    }

    It 'makes the same report from a result that went through a job (remoting serialization)' {
        $back = Start-Job { param($r) $r } -ArgumentList $Result | Receive-Job -Wait -AutoRemoveJob
        $back.PSObject.TypeNames | Should -Contain 'Deserialized.DeltaMigrate.Engine.Migration.MigrationResult'
        $original = Join-Path $Out 'job-original.html'; $readBack = Join-Path $Out 'job.html'
        $Result | Export-KvmMigrationReport -Path $original -Force
        $back | Export-KvmMigrationReport -Path $readBack -Force
        (Get-FileHash $readBack).Hash | Should -Be (Get-FileHash $original).Hash -Because 'the types file keeps rounds and counters through the default remoting depth'
    }
}
